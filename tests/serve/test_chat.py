"""`kit chat MODEL|URL` as a person at a terminal uses it (through a pseudo-terminal) and as a script
pipes into it: replies stream, /system and /clear change what the model is sent, Ctrl-C stops a reply,
/exit and Ctrl-D end with 0, piped lines are one turn each, and a dead URL is a clean error."""

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kit_testing import ROOT, interruptible
from serve_testing import free_port, wait_http

pytestmark = pytest.mark.timeout(300)

KIT = Path(sys.executable).parent / "kit"
# A UTF-8 locale, so that readline takes 你是谁 as characters; a dumb terminal, so it writes no escapes.
ENV = {**os.environ, "LC_ALL": "C.UTF-8", "TERM": "dumb", "COLUMNS": "200"}


def pipe_kit_chat(*args: str, lines: str) -> subprocess.CompletedProcess:
    """`printf LINES | kit chat ARGS`."""
    return subprocess.run([str(KIT), "chat", *args], input=lines, capture_output=True, text=True, cwd=ROOT,
                          env=ENV, timeout=240)


class Terminal:
    """`kit chat ARGS` with a pseudo-terminal as its stdin, stdout and stderr."""

    def __init__(self, *args: str):
        self.fd, child = os.openpty()
        self.proc = subprocess.Popen([str(KIT), "chat", *args], stdin=child, stdout=child, stderr=child,
                                     cwd=ROOT, env=ENV, preexec_fn=interruptible)
        os.close(child)
        self.screen, self.read_to = "", 0

    def expect(self, text: str, timeout: float = 120) -> str:
        """Everything shown since the last expect, up to and including `text`."""
        deadline = time.monotonic() + timeout
        while (at := self.screen.find(text, self.read_to)) < 0:
            assert self.read(deadline - time.monotonic()), f"no {text!r} on the screen:\n{self.screen}"
        shown, self.read_to = self.screen[self.read_to:at + len(text)], at + len(text)
        return shown

    def read(self, timeout: float) -> bool:
        if timeout <= 0 or not select.select([self.fd], [], [], timeout)[0]:
            return False
        try:
            data = os.read(self.fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.screen += data.decode("utf-8", "replace").replace("\r\n", "\n")
        return bool(data)

    def type(self, line: str) -> None:
        os.write(self.fd, (line + "\r").encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.fd)


def test_chat_with_a_local_model_in_a_terminal(tiny_model):
    term = Terminal(str(tiny_model), "--max-new-tokens", "24")
    try:
        assert "persona: 猪八戒 (bajie" in term.expect("User >>> ")
        term.type("你好")
        term.expect("猪八戒 >>> ")
        assert term.expect("User >>> ").strip().removesuffix("User >>>").strip()  # the reply
        term.type("/system")
        assert "你是猪八戒" in term.expect("User >>> ")  # the persona's prompt by default
        term.type("/clear")
        assert "history cleared" in term.expect("User >>> ")
        os.write(term.fd, b"\x04")  # Ctrl-D
        assert term.proc.wait(timeout=60) == 0
    finally:
        term.close()


class ScriptedModel:
    """A model for the embedded server whose reply says what it was sent (the system prompt, how many
    user turns) and comes in two pieces, the second only once the test has seen the first on screen."""

    path, context = Path("scripted"), 2048

    def __init__(self):
        self.first_seen = threading.Event()

    def stream(self, messages, params, cancelled=None):
        from kit.serve.hf_engine import Delta

        system = next(m["content"] for m in messages if m["role"] == "system")
        turns = sum(m["role"] == "user" for m in messages)
        yield Delta(f"[turns={turns} ")
        self.first_seen.wait(30)
        self.first_seen.clear()
        yield Delta(f"system={system[:8]}]")
        yield Delta("", finish_reason="stop", prompt_tokens=1, completion_tokens=2)


@pytest.fixture
def scripted_server():
    import uvicorn

    from kit.serve.openai_api import create_app

    model, port = ScriptedModel(), free_port()
    server = uvicorn.Server(uvicorn.Config(create_app({"base": model, "tuned": model}), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=60)
        yield f"http://127.0.0.1:{port}/v1", model
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_chat_with_a_server_streams_and_sends_what_the_commands_say(scripted_server):
    url, model = scripted_server
    term = Terminal(url)
    try:
        def ask(text: str) -> str:
            term.type(text)
            term.expect("[turns=")  # the first piece is on screen while the second is still to come
            assert "system=" not in term.screen[term.read_to:]
            model.first_seen.set()
            return "[turns=" + term.expect("User >>> ").removesuffix("User >>> ").strip()

        assert f"chatting with {url}#tuned" in term.expect("User >>> ")
        assert ask("你是谁？") == "[turns=1 system=你是猪八戒，法号]"
        assert ask("还有呢？") == "[turns=2 system=你是猪八戒，法号]"  # the history went along
        term.type("/system 你是孙悟空。")
        term.expect("User >>> ")
        assert ask("你是谁？") == "[turns=3 system=你是孙悟空。]"
        term.type("/clear")
        term.expect("User >>> ")
        assert ask("你是谁？") == "[turns=1 system=你是孙悟空。]"
        term.type("慢慢说")
        term.expect("[turns=2 ")
        term.proc.send_signal(signal.SIGINT)  # Ctrl-C mid-reply
        assert "stopped; this turn is not kept" in term.expect("User >>> ")
        model.first_seen.set()  # let the abandoned reply finish on the server
        while model.first_seen.is_set():
            time.sleep(0.05)
        assert ask("你是谁？") == "[turns=2 system=你是孙悟空。]"
        term.type("/exit")
        assert term.proc.wait(timeout=30) == 0
    finally:
        model.first_seen.set()
        term.close()


def test_piped_lines_get_the_same_greedy_reply_from_the_folder_and_its_server(tuned_model):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "kit.serve.hf_server", "--model", f"tuned={tuned_model}",
                               "--port", str(port)], cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        local = pipe_kit_chat(str(tuned_model), "--max-new-tokens", "24", lines="你是谁？\n/exit\n")
        assert local.returncode == 0, local.stderr
        assert "persona: 猪八戒 (bajie, from " in local.stderr  # the model's record names the character
        assert local.stdout.strip() and "\n" not in local.stdout.strip()  # one reply, nothing else
        wait_http(f"http://127.0.0.1:{port}/health", proc=server)
        served = pipe_kit_chat(f"http://127.0.0.1:{port}/v1", "--max-new-tokens", "24",
                               lines="你是谁？\n/exit\n")
        assert served.returncode == 0, served.stderr
        assert served.stdout == local.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_dead_url_is_a_clean_error():
    result = pipe_kit_chat(f"http://127.0.0.1:{free_port()}/v1", lines="你好\n")
    assert result.returncode == 2
    assert re.search(r"error: no OpenAI-compatible server answers at http://127\.0\.0\.1:\d+/v1", result.stderr)
    assert "fix: start it" in result.stderr and "Traceback" not in result.stderr


def test_a_long_chat_leaves_the_oldest_turns_out_of_what_a_local_model_sees(tiny_model):
    from kit.chat import LocalChat
    from kit.errors import KitError

    local = LocalChat(tiny_model)
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": "猪" * 200} for i in range(6)]
    messages = [{"role": "system", "content": "你是猪八戒。"}, *turns, {"role": "user", "content": "你好"}]
    room = local.context - local._tokens(messages[:1] + messages[-3:])  # room for the last exchange only
    assert local.fit(messages, room) == messages[:1] + messages[-3:]
    assert local.fit(messages, 1) == messages
    with pytest.raises(KitError, match="do not fit the context window"):
        local.fit(messages, local.context)
