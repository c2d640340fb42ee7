"""`kit data generate`: persona dialogues through any OpenAI-compatible API, crash-safe.

Dialogue i always sends the same request (gen_prompts), so its hash is its cache key. Each finished
call is appended to the cache (written through to the OS) before anything else happens, and fsynced
within SYNC_EVERY seconds; a re-run answers cached keys from the cache and sends only the rest.
Failed calls (429, 5xx, timeouts, broken bodies) are retried with backoff and never cached; finished
calls whose JSON is useless stay cached (they were paid for) and count as rejected. Answers are
judged (parsed, filtered, deduplicated) once each, in index order whatever order they finish in, so
the output is deterministic and the same on a re-run.
"""

import asyncio
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kit.data.clean import Deduper, Filters
from kit.data.dialogue_json import parse_dialogue
from kit.data.gen_cache import RequestCache
from kit.data.gen_prompts import request_body, request_key
from kit.data.outpath import check_output
from kit.data.samples import chat, replies, write_jsonl
from kit.errors import KitError
from kit.keys import is_loopback, refuse_plain_http
from kit.persona import Persona

RETRYABLE_STATUS = {408, 409, 429}
# A server's Retry-After is honoured up to this many seconds: one asking for a day (86400) must not
# hang the run; after the capped wait the call is retried, and counts against --retries as usual.
MAX_RETRY_AFTER = 60.0
# Group commit: one fsync per interval covers every call finished in it. An fsync per call (~8 ms)
# held each call slot that long; now a kill loses nothing (each line is flushed to the OS at once)
# and only a power cut or OS crash can lose the last SYNC_EVERY seconds of calls (sent again on re-run).
SYNC_EVERY = 0.5


@dataclass
class Settings:
    model: str
    base_url: str
    n: int
    concurrency: int = 4
    turns: int = 3
    temperature: float = 0.9
    max_tokens: int = 1024  # per call
    timeout: float = 60.0
    retries: int = 6
    max_requests: int | None = None  # default 2n: rejected answers are replaced, but not forever
    token_cap: int | None = None  # stop sending once the cache's calls used this many tokens
    price_in: float = 0.0  # per million prompt tokens
    price_out: float = 0.0  # per million completion tokens
    cost_cap: float | None = None
    require_markers: bool = True
    api_key_env: str = "OPENAI_API_KEY"


@dataclass
class Tally:
    """What the run did, for the progress bar and the summary."""
    sent: int = 0
    cached: int = 0
    retries: int = 0
    rejected: dict = field(default_factory=dict)

    def reject(self, why: str) -> None:
        self.rejected[why] = self.rejected.get(why, 0) + 1


def api_key(env_var: str, base_url: str) -> str:
    """The key from the environment (never from a file or flag, never printed), for https or loopback only."""
    key = os.environ.get(env_var)
    if key:
        refuse_plain_http(base_url, "--api-key-env", env_var)
        return key
    if is_loopback(urlparse(base_url).hostname):
        return "EMPTY"  # local servers (LMDeploy, vLLM, a test server) accept any key
    raise KitError(f"no API key: the environment variable {env_var} is not set",
                   f"export {env_var}=... (or pick another variable with --api-key-env)")


def _retry_after(error) -> float | None:
    response = getattr(error, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _backoff(retry_after: float | None, attempt: int, host: str, say) -> float:
    """Seconds to wait before the next attempt: the server's Retry-After (capped), else exponential."""
    if retry_after is None:
        return min(30.0, 0.5 * 2 ** attempt) * random.uniform(0.5, 1)
    if retry_after > MAX_RETRY_AFTER:
        say(f"{host} asked to wait {retry_after:g} s (Retry-After); waiting {MAX_RETRY_AFTER:g} s, "
            "the most kit waits, then retrying")
        return MAX_RETRY_AFTER
    return retry_after


async def call_api(client, body: dict, settings: Settings, tally: Tally, say) -> dict:
    """One chat completion with backoff on 429/5xx/timeouts/broken bodies: {'content', 'usage'}.
    `say` reports what the user should know while it waits (a capped Retry-After)."""
    import openai

    for attempt in range(settings.retries + 1):
        delay = None
        try:
            # The body as built, the answer as plain JSON: chat.completions.create would spend ~0.6 ms
            # of event-loop CPU per call walking the body through its type hints and building models.
            data = await client.post("/chat/completions", body=body, cast_to=object,
                                     options={"timeout": settings.timeout})
            usage = data.get("usage") or {}
            return {"content": data["choices"][0]["message"].get("content") or "",
                    "usage": {"prompt_tokens": usage.get("prompt_tokens") or 0,
                              "completion_tokens": usage.get("completion_tokens") or 0}}
        except openai.APIStatusError as e:
            if e.status_code in (401, 403):
                raise KitError(f"the API refused the key ({e.status_code})",
                               "check the key in the environment variable and the --base-url") from None
            if e.status_code < 500 and e.status_code not in RETRYABLE_STATUS:
                raise KitError(f"the API rejected the request ({e.status_code}): {e.message}",
                               "check --model and --base-url") from None
            delay = _retry_after(e)
            why = f"HTTP {e.status_code}"
        except (openai.APITimeoutError, openai.APIConnectionError) as e:
            why = type(e).__name__
        except (openai.APIResponseValidationError, json.JSONDecodeError, KeyError, IndexError,
                AttributeError, TypeError) as e:
            why = f"broken response ({type(e).__name__})"
        if attempt == settings.retries:
            raise KitError(f"the API failed {settings.retries + 1} times in a row (last: {why})",
                           "check the server; re-run later: finished calls are cached")
        tally.retries += 1
        await asyncio.sleep(_backoff(delay, attempt, urlparse(settings.base_url).hostname, say))
    raise AssertionError("unreachable")


class Generator:
    def __init__(self, persona: Persona, settings: Settings, cache: RequestCache):
        self.persona, self.settings, self.cache = persona, settings, cache
        self.names = {persona.name, *persona.aliases}
        markers = tuple(persona.style_markers + persona.catchphrases) if settings.require_markers else ()
        self.filters = Filters(max_chars=200, markers=markers)
        self.tally = Tally()
        self._dedup = Deduper()
        self._finished: dict[int, dict] = {}  # cache entries waiting for a lower index to finish
        self._judged = 0  # indices below this are judged
        self.samples: list[dict] = []  # the output, in index order
        self._in_flight = 0
        self.issued = 0  # dialogue indices taken so far (cached or sent)
        self._cond = asyncio.Condition()

    def body(self, index: int) -> dict:
        s = self.settings
        return request_body(self.persona, index, model=s.model, turns=s.turns, temperature=s.temperature,
                            max_tokens=s.max_tokens)

    def evaluate(self, content: str) -> tuple[dict | None, str | None]:
        """(sample, None) if the answer makes a usable dialogue, else (None, why not)."""
        try:
            turns = parse_dialogue(content, self.names)
        except ValueError as e:
            return None, f"unparseable: {e}"
        sample = chat(self.persona.system_prompt, turns)
        why = self.filters.reason(replies(sample)) or self._dedup.check(replies(sample))
        return (None, why) if why else (sample, None)

    def _judge(self, entry: dict) -> None:
        sample, why = self.evaluate(entry["content"])
        if sample is None:
            self.tally.reject(why.split(":")[0])
        elif len(self.samples) < self.settings.n:
            self.samples.append(sample)

    def _take(self, index: int, entry: dict) -> None:
        """Judge finished calls in index order: of two near copies the lower index stays, however
        they finished, so the output needs no second pass over the cache."""
        self._finished[index] = entry
        while self._judged in self._finished:
            self._judge(self._finished.pop(self._judged))
            self._judged += 1

    def spent(self) -> tuple[int, float]:
        prompt, completion = self.cache.tokens()
        s = self.settings
        return prompt + completion, (prompt * s.price_in + completion * s.price_out) / 1e6

    def over_budget(self) -> str | None:
        tokens, cost = self.spent()
        if self.settings.token_cap is not None and tokens >= self.settings.token_cap:
            return f"token cap {self.settings.token_cap} reached ({tokens} tokens)"
        if self.settings.cost_cap is not None and cost >= self.settings.cost_cap:
            return f"cost cap {self.settings.cost_cap} reached ({cost:.4f})"
        return None

    async def _worker(self, client, progress, task) -> None:
        limit = self.settings.max_requests or 2 * self.settings.n
        while True:
            async with self._cond:
                # Wait while the calls in flight (and those finished, not yet judged) may already complete
                # the set; go on if one fails.
                while (len(self.samples) + self._in_flight + len(self._finished) >= self.settings.n
                       and self._in_flight):
                    await self._cond.wait()
                if len(self.samples) >= self.settings.n or self.issued >= limit:
                    return
                index, body = self.issued, self.body(self.issued)
                key = request_key(body)
                if key not in self.cache and self.over_budget():
                    return
                self.issued += 1
                self._in_flight += 1
            try:
                if key in self.cache:
                    self.tally.cached += 1
                    entry = self.cache.get(key)
                else:
                    self.tally.sent += 1
                    result = await call_api(client, body, self.settings, self.tally, self._say(progress))
                    entry = {"key": key, "index": index, "model": body["model"], **result}
                    self.cache.add(entry)  # safe from a crash from here on; fsynced by _sync_cache
                self._take(index, entry)
            finally:
                async with self._cond:
                    self._in_flight -= 1
                    self._cond.notify_all()
            tokens, cost = self.spent()
            progress.update(task, completed=len(self.samples), sent=self.tally.sent,
                            cached=self.tally.cached, retries=self.tally.retries, tokens=tokens, cost=cost)

    @staticmethod
    def _say(progress):
        """Print above the progress bar, plain text (a host or URL is no markup)."""
        return lambda text: progress.console.print(text, style="yellow", markup=False)

    async def _sync_cache(self) -> None:
        while True:
            await asyncio.sleep(SYNC_EVERY)
            await asyncio.to_thread(self.cache.sync)  # off the event loop: calls go on meanwhile

    async def run(self, console: Console, key: str) -> None:
        import openai

        # One connection per call slot, all kept alive (openai's default pool keeps only 100 idle);
        # the Limits class of whichever httpx this openai is built on.
        c = self.settings.concurrency
        limits = type(openai.DEFAULT_CONNECTION_LIMITS)(max_connections=c, max_keepalive_connections=c)
        # Omit: the client would send $OPENAI_ORG_ID / $OPENAI_PROJECT_ID to whatever host this is.
        client = openai.AsyncOpenAI(base_url=self.settings.base_url, api_key=key, max_retries=0,
                                    timeout=self.settings.timeout,
                                    default_headers={"OpenAI-Organization": openai.Omit(),
                                                     "OpenAI-Project": openai.Omit()},
                                    http_client=openai.DefaultAsyncHttpxClient(limits=limits))
        columns = [TextColumn("[bold]dialogues"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("sent {task.fields[sent]} · cached {task.fields[cached]} · "
                              "retries {task.fields[retries]} · tokens {task.fields[tokens]} · "
                              "cost {task.fields[cost]:.4f}"), TimeElapsedColumn()]
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("generate", total=self.settings.n, sent=0, cached=0, retries=0,
                                     tokens=self.spent()[0], cost=self.spent()[1])
            syncer = asyncio.create_task(self._sync_cache())
            try:
                await asyncio.gather(*(self._worker(client, progress, task) for _ in range(c)))
            finally:
                syncer.cancel()
                await client.close()

    def collect(self) -> list[dict]:
        """The output: the first n usable dialogues in index order, from every finished call."""
        for index in sorted(self._finished):  # left behind a call that failed when the run stopped
            self._judge(self._finished.pop(index))
        return self.samples


def _report(gen: Generator, samples: list[dict], out: Path, console: Console) -> None:
    tokens, cost = gen.spent()
    where = out if samples else "nothing written"
    console.print(f"[green]{len(samples)}[/]/{gen.settings.n} dialogues → {where}; {gen.tally.sent} calls sent, "
                  f"{gen.tally.cached} from cache, {gen.tally.retries} retries; {tokens} tokens, cost "
                  f"{cost:.4f}; rejected: {gen.tally.rejected or 'none'}")


def generate(persona: Persona, settings: Settings, out: Path, cache_path: Path | None = None,
             console: Console | None = None) -> int:
    """Generate up to settings.n dialogues into `out`; returns how many were written.

    `out` is written (atomically) once the run has a usable dialogue, also when an error stopped it: it
    holds every dialogue finished so far, and the error is raised after. The cache keeps every finished
    call, so the next run rebuilds `out` from it. With none, `out` is left as it was and the run fails."""
    console = console or Console(stderr=True)
    cache_path = Path(cache_path or out.with_name(out.name + ".cache.jsonl"))
    # Before any paid call: an output over the cache would make the next run pay for every call again.
    check_output(out, "-o", {"persona file": persona.path, "cache": cache_path}, "dialogues.jsonl")
    check_output(cache_path, "--cache", {"persona file": persona.path}, "dialogues.cache.jsonl")
    key = api_key(settings.api_key_env, settings.base_url)
    cache = RequestCache(cache_path)
    if cache.entries:
        console.print(f"resuming: {len(cache.entries)} finished calls in {cache.path}"
                      + (f" ({cache.torn} torn line dropped)" if cache.torn else ""))
    gen = Generator(persona, settings, cache)
    stopped: KitError | None = None
    try:
        asyncio.run(gen.run(console, key))
    except KeyboardInterrupt:
        stopped = KitError("interrupted", "run the same command again to continue where it stopped")
    except KitError as e:
        stopped = e
    finally:
        cache.close()
    samples = gen.collect()
    if samples:
        write_jsonl(out, samples)
    _report(gen, samples, out, console)
    kept = "" if samples else f"; {out} left as it was"
    if stopped is not None:
        raise KitError(f"{stopped.message}: {len(cache.entries)} finished calls are safe in "
                       f"{cache.path}{kept}", stopped.fix)
    budget = gen.over_budget()
    if not samples:
        raise KitError(f"no usable dialogue ({budget or 'every answer was rejected'}){kept}",
                       "see `rejected:` above; raise the cap or --max-requests, or check --model")
    if len(samples) < settings.n:
        console.print(f"[yellow]fewer dialogues than asked: {budget or 'too many answers rejected'}; "
                      "re-run (with a higher cap or --max-requests) to continue[/]")
    return len(samples)
