"""`kit chat MODEL|URL`: a terminal chat with a local model folder or a served model, as its character.

Like InternLM2's CLI demo: replies stream as they are generated and the conversation keeps its history;
/clear, /system and /exit steer it. Lines piped into stdin are one user turn each, so a chat can be
scripted (`xtuner chat` wants a double Enter per turn and fails with EOFError at the pipe's end).
"""

import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import typer
from rich.console import Console
from rich.markup import escape

from kit import chat_format
from kit.errors import KitError

HELP = "/clear forgets the history · /system TEXT sets the system prompt (/system alone shows it) · " \
       "/exit or Ctrl-D ends · Ctrl-C stops a reply"
USER_PROMPT = "User >>> "


@dataclass(frozen=True)
class ChatSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy, the same reply every time


class LocalChat:
    """A Hugging Face model folder, loaded as every stage loads it (on the GPU when there is one)."""

    def __init__(self, path: Path):
        import torch

        from kit.eval.backends import SMALL_MODEL
        from kit.hf_models import load_model

        if not (path / "config.json").is_file():
            raise KitError(f"not a model folder (no config.json): {path}",
                           "pass a Hugging Face model folder (e.g. demo/merged from `kit demo`) or a server's "
                           "URL (http://HOST:PORT/v1)")
        self.label = str(path)
        self.tokenizer, self.model = load_model(path)
        if not self.tokenizer.chat_template:
            raise KitError(f"{path} has no chat template in its tokenizer config",
                           "use a model written by `kit merge` or the tiny base (`kit demo`)")
        self.stop_ids = chat_format.stop_ids(self.tokenizer, self.model.generation_config)
        self.context = int(getattr(self.model.config, "max_position_embeddings", 2048))
        if self.model.device.type == "cpu" and sum(p.numel() for p in self.model.parameters()) < SMALL_MODEL:
            torch.set_num_threads(1)  # as kit eval: intra-op threads slow a tiny model down on a shared CPU

    def _tokens(self, messages: list[dict]) -> int:
        return len(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))

    def fit(self, messages: list[dict], max_new_tokens: int) -> list[dict]:
        """`messages` (system, turns…, the new user turn) without the oldest turns that do not fit the
        context window beside a reply of max_new_tokens; the history itself is kept."""
        system, turns = messages[:1], messages[1:]
        while self._tokens(system + turns) + max_new_tokens > self.context:
            if len(turns) == 1:
                raise KitError(f"the message and --max-new-tokens {max_new_tokens} do not fit the context "
                               f"window of {self.label} ({self.context} tokens)",
                               "write a shorter message, a shorter /system prompt or lower --max-new-tokens")
            turns = turns[2:]  # the oldest user turn and its reply
        return system + turns

    def stream(self, messages: list[dict], settings: ChatSettings) -> Iterator[str]:
        """The reply's text as it is generated; closing the iterator stops the generation."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        left = threading.Event()

        class Left(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return left.is_set()

        inputs = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                    return_dict=True).to(self.model.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        sampling = dict(do_sample=True, temperature=settings.temperature) if settings.temperature > 0 else \
            dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        failed: list[BaseException] = []

        def generate():
            try:
                with torch.inference_mode():
                    self.model.generate(**inputs, max_new_tokens=settings.max_new_tokens, streamer=streamer,
                                        eos_token_id=self.stop_ids, pad_token_id=self.stop_ids[0],
                                        stopping_criteria=StoppingCriteriaList([Left()]), **sampling)
            except BaseException as e:  # handed to the reading thread, which would otherwise wait forever
                failed.append(e)
                streamer.end()

        worker = threading.Thread(target=generate, daemon=True)
        worker.start()
        try:
            yield from (text for text in streamer if text)
        finally:
            left.set()
            worker.join()
        if failed:
            raise failed[0]


class RemoteChat:
    """An OpenAI-compatible server, reached (key, errors) as kit eval reaches one. The URL may end in
    #MODEL; else its `tuned` model (what `kit serve` names the tuned one), else the first it lists."""

    def __init__(self, url: str, key_env: str | None):
        from kit.eval.api import Server
        from kit.eval.backends import START_FIX

        url, _, model = url.partition("#")
        self.server = Server(url, key_env, "--api-key-env", START_FIX)
        listed = self.server.check()
        if not (model or listed):
            raise KitError(f"{self.server.url}/models lists no model", f"name the model: {self.server.url}#MODEL")
        self.model = model or ("tuned" if "tuned" in listed else listed[0])
        self.label = f"{self.server.url}#{self.model}"

    def fit(self, messages: list[dict], max_new_tokens: int) -> list[dict]:
        return messages  # the server knows its context window and refuses an overflow (HTTP 400)

    def stream(self, messages: list[dict], settings: ChatSettings) -> Iterator[str]:
        import openai

        try:
            with self.server.errors(), self.server.client.chat.completions.create(
                    model=self.model, messages=messages, max_tokens=settings.max_new_tokens,
                    temperature=settings.temperature, stream=True) as response:
                for chunk in response:
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
        except openai.APIStatusError as e:
            raise KitError(f"{self.label} refused the reply: HTTP {e.status_code} {e.message}",
                           "/clear if the history outgrew its context window; check the model name after #"
                           ) from None


def _typed_lines() -> Iterator[str]:
    import readline  # noqa: F401  (line editing and ↑ for earlier lines in input())

    while True:
        try:
            yield input(USER_PROMPT)
        except EOFError:  # Ctrl-D
            print()
            return
        except KeyboardInterrupt:  # Ctrl-C at the prompt drops the line, as in a shell
            print()


def run_chat(backend: LocalChat | RemoteChat, system_prompt: str, name: str, settings: ChatSettings,
             interactive: bool) -> None:
    """The conversation: each line is a command or a user turn. Piped (not interactive), stdout holds
    only the replies, one after another, and a failed reply ends the chat (the next lines assume it)."""
    notes = Console(stderr=True, soft_wrap=True, highlight=False)
    history: list[dict] = []
    if interactive:
        notes.print(f"chatting with {escape(backend.label)} · {HELP}")
    lines = _typed_lines() if interactive else (line.rstrip("\r\n") for line in sys.stdin)
    for line in lines:
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            command, _, arg = text.partition(" ")
            if command == "/exit":
                return
            if command == "/clear":
                history.clear()
                notes.print("history cleared")
            elif command == "/system" and arg.strip():
                system_prompt = arg.strip()
                notes.print("system prompt set (the history is kept; /clear starts over)")
            elif command == "/system":
                print(system_prompt, flush=True)
            else:
                notes.print(f"unknown command {escape(command)}: {HELP}")
            continue
        turn = {"role": "user", "content": text}
        messages = [{"role": "system", "content": system_prompt}, *history, turn]
        parts: list[str] = []
        stream = None
        try:
            sent = backend.fit(messages, settings.max_new_tokens)
            if dropped := (len(messages) - len(sent)) // 2:
                notes.print(f"(the oldest {dropped} turn(s) left out: the context window is full; /clear starts over)")
            if interactive:
                print(f"{name} >>> ", end="", flush=True)
            stream = backend.stream(sent, settings)
            for part in stream:
                parts.append(part)
                print(part, end="", flush=True)
        except KeyboardInterrupt:
            print(flush=True)
            notes.print("stopped; this turn is not kept")
            continue
        except KitError as e:
            if not interactive:
                raise
            print(flush=True)
            notes.print(f"[bold red]error:[/] {escape(e.message)}")
            if e.fix:
                notes.print(f"[cyan]fix:[/] {escape(e.fix)}")
            continue
        finally:
            if stream is not None:
                stream.close()
        print(flush=True)
        history += [turn, {"role": "assistant", "content": "".join(parts)}]


def chat(
    model: str = typer.Argument(..., metavar="MODEL|URL", help="A local model folder (e.g. demo/merged) or an "
                                "OpenAI-compatible URL (http://HOST:PORT/v1, optionally #MODEL; default "
                                "its `tuned` model, else the first it lists)."),
    character: str = typer.Option(None, "--character", help="Folder under datasets/ whose persona is the "
                                  "system prompt (default: the one the model records, kit_merge.json)."),
    max_new_tokens: int = typer.Option(256, min=1, help="Longest reply, in tokens."),
    temperature: float = typer.Option(0.0, min=0.0, help="Sampling temperature; 0 = greedy."),
    api_key_env: str = typer.Option(None, "--api-key-env", help="Environment variable holding the URL's key "
                                    "(as given to `kit serve --api-key-env`); without it no key is sent."),
):
    """Chat in the terminal as the model's character: streamed replies, history, /clear, /system, /exit.
    Piped lines are one user turn each."""
    from kit.artifacts import choose_persona
    from kit.eval.backends import is_url

    if api_key_env and not is_url(model):
        raise KitError(f"--api-key-env is for a server's URL; {model} is a local folder",
                       "drop --api-key-env, or pass the URL (http://HOST:PORT/v1)")
    persona = choose_persona(character, [model], Console(stderr=True))
    backend = RemoteChat(model, api_key_env) if is_url(model) else LocalChat(Path(model))
    run_chat(backend, persona.system_prompt, persona.name, ChatSettings(max_new_tokens, temperature),
             interactive=sys.stdin.isatty())
