"""The compare page's logic, apart from Streamlit so it is unit-testable: history truncation, both
answers streamed at once, blind A/B votes in SQLite, conversation export."""

import json
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import openai

CountTokens = Callable[[list[dict]], int]


@dataclass(frozen=True)
class Endpoint:
    name: str  # model name the server answers to ("base", "tuned")
    url: str  # OpenAI base URL (…/v1)
    context: int = 2048


def history_for(turns: list[dict], name: str) -> list[dict]:
    """One side's own conversation: each past prompt and *that side's* answer."""
    out = []
    for t in turns:
        answer = t["answers"].get(name)
        if answer:  # a failed or empty answer is left out, with its prompt
            out += [{"role": "user", "content": t["prompt"]}, {"role": "assistant", "content": answer}]
    return out


def fit_context(system: str, history: list[dict], prompt: str, max_tokens: int, context: int,
                count: CountTokens) -> list[dict]:
    """system + the newest whole turns that fit + prompt, leaving max_tokens for the answer."""
    head = [{"role": "system", "content": system}] if system.strip() else []
    tail = [{"role": "user", "content": prompt}]
    kept = list(history)
    while kept and count(head + kept + tail) + max_tokens > context:
        kept = kept[2:]  # drop the oldest user/assistant pair
    return head + kept + tail


def stream_all(client_for: Callable[[Endpoint], openai.OpenAI], requests: dict[Endpoint, list[dict]],
               params: dict) -> Iterator[tuple[str, str, str | None]]:
    """Stream every side at once; yield (name, text so far, error) whenever one side changes."""
    q: queue.Queue = queue.Queue()

    def worker(ep: Endpoint, messages: list[dict]):
        text = ""
        try:
            stream = client_for(ep).chat.completions.create(model=ep.name, messages=messages, stream=True,
                                                            **params)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
                    q.put((ep.name, text, None))
        except openai.APIError as e:
            q.put((ep.name, text, describe_error(ep, e)))
        finally:
            q.put((ep.name, None, None))

    for ep, messages in requests.items():
        threading.Thread(target=worker, args=(ep, messages), daemon=True).start()
    running = len(requests)
    while running:
        name, text, error = q.get()
        if text is None and error is None:
            running -= 1
        else:
            yield name, text, error


def describe_error(ep: Endpoint, e: openai.APIError) -> str:
    if isinstance(e, openai.APIConnectionError):
        return f"cannot reach the '{ep.name}' server at {ep.url} — is `kit serve` still running?"
    status = getattr(e, "status_code", None)
    body = getattr(e, "body", None)
    message = body.get("message") if isinstance(body, dict) and body.get("message") else str(e)
    return f"'{ep.name}' server error{f' {status}' if status else ''}: {message}"


class VoteStore:
    """Blind A/B votes: which model the user preferred, with the answers that were compared."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("""CREATE TABLE IF NOT EXISTS votes (
                id INTEGER PRIMARY KEY, ts REAL, prompt TEXT, left_model TEXT, right_model TEXT,
                winner TEXT, left_answer TEXT, right_answer TEXT, settings TEXT)""")

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def record(self, prompt: str, left: str, right: str, winner: str, answers: dict, settings: dict) -> None:
        """winner: a model name, "tie" or "both_bad"."""
        with self._db() as db:
            db.execute("INSERT INTO votes (ts, prompt, left_model, right_model, winner, left_answer, "
                       "right_answer, settings) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (time.time(), prompt, left, right, winner, answers.get(left, ""), answers.get(right, ""),
                        json.dumps(settings, ensure_ascii=False)))

    def tally(self) -> dict[str, int]:
        with self._db() as db:
            return dict(db.execute("SELECT winner, COUNT(*) FROM votes GROUP BY winner").fetchall())


def win_rate(tally: dict[str, int], model: str) -> float | None:
    """Share of decided votes (ties and both-bad count half) won by `model`."""
    total = sum(tally.values())
    if not total:
        return None
    return (tally.get(model, 0) + 0.5 * (tally.get("tie", 0) + tally.get("both_bad", 0))) / total


def export_json(turns: list[dict], settings: dict) -> str:
    return json.dumps({"settings": settings, "turns": turns}, ensure_ascii=False, indent=2)


def export_markdown(turns: list[dict], settings: dict) -> str:
    lines = ["# kit compare", "", f"system prompt: {settings.get('system', '')}", ""]
    for i, t in enumerate(turns, 1):
        lines += [f"## Turn {i}", "", f"**user:** {t['prompt']}", ""]
        for name, answer in t["answers"].items():
            lines += [f"**{name}:** {answer}", ""]
        if t.get("errors"):
            lines += [f"_error ({n}): {e}_" for n, e in t["errors"].items()] + [""]
        if t.get("vote"):
            lines += [f"vote: {t['vote']}", ""]
    return "\n".join(lines)
