"""`kit serve --engine transformers --no-ui` as a user runs it: prints its URL, answers the openai
client for both models, and Ctrl-C stops it and its server child; killed outright (SIGKILL, the OOM
killer), it still leaves no server behind; a server asked to stop mid-generation stops within seconds."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from kit_testing import ROOT, interruptible
from serve_testing import build_one_token_model, free_port, wait_http

pytestmark = pytest.mark.timeout(300)


def start_kit_serve(*args: str) -> tuple[subprocess.Popen, str]:
    """`kit serve ARGS`, once it says it is ready; (the process, what it printed)."""
    kit = Path(sys.executable).parent / "kit"
    proc = subprocess.Popen([str(kit), "serve", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"},
                            preexec_fn=interruptible)
    out, deadline = "", time.monotonic() + 240
    try:
        while "Ctrl-C stops everything" not in out:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, out
            out += line
            assert time.monotonic() < deadline, out
    except BaseException:
        proc.kill()
        raise
    return proc, out


def server_pids(port: int) -> list[str]:
    return subprocess.run(["pgrep", "-f", f"kit.serve.hf_server.*--port {port}"],
                          capture_output=True, text=True).stdout.split()


def alive(pid: str) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_kit_serve_transformers_no_ui(tiny_model, tuned_model, tmp_path):
    port = free_port()
    proc, out = start_kit_serve("--engine", "transformers", "--base", str(tiny_model), "--tuned", str(tuned_model),
                                "--no-ui", "--port", str(port))
    try:
        urls = set(re.findall(r"http://127\.0\.0\.1:\d+/v1", out))
        assert urls == {f"http://127.0.0.1:{port}/v1"}, out
        client = openai.OpenAI(base_url=urls.pop(), api_key="x", timeout=60, max_retries=0)
        for name in ("base", "tuned"):
            ask = dict(model=name, messages=[{"role": "user", "content": "你是谁？"}], max_tokens=6, temperature=0)
            plain = client.chat.completions.create(**ask)
            assert plain.choices[0].message.content
            assert plain.usage.prompt_tokens > 100  # the persona system prompt was put in
            streamed = "".join(c.choices[0].delta.content or "" for c in
                               client.chat.completions.create(**ask, stream=True) if c.choices)
            assert streamed == plain.choices[0].message.content
        children = server_pids(port)
        assert children
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        time.sleep(0.5)
        assert not any(alive(pid) for pid in children)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_kit_serve_killed_outright_leaves_no_server(tiny_model):
    """SIGKILL gives kit no chance to stop its children: Linux's parent-death signal must."""
    from kit.serve.launch import require_free_port

    port = free_port()
    proc, out = start_kit_serve("--engine", "transformers", "--tuned", str(tiny_model), "--no-ui",
                                "--port", str(port))
    children = server_pids(port)
    try:
        assert children, out
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in children):
            assert time.monotonic() < deadline, f"server {children} outlived kit serve"
            time.sleep(0.2)
        require_free_port("127.0.0.1", port, "--port")  # a KitError if the port is still held
    finally:
        for pid in filter(alive, children):  # the old behaviour: do not leave them running
            os.kill(int(pid), signal.SIGKILL)


def test_tethered_child_whose_parent_is_already_gone_does_not_start():
    """kit serve may die between starting a child and the child arming its parent-death signal."""
    from kit.serve import tether

    cmd = tether.command(sys.executable, "http.server", ["0"])
    result = subprocess.run(cmd, env={**os.environ, tether.PARENT_ENV: "1"}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1 and "kit serve (pid 1) is gone" in result.stderr, result.stderr


def test_embedded_server_stops_within_seconds_on_sigterm_while_generating(tiny_model, tmp_path):
    """Two long generations, one queued behind the other: SIGTERM (kit serve's stop, or the parent-death
    signal) ends the server in seconds, not when both are done."""
    from transformers import AutoTokenizer

    ha = AutoTokenizer.from_pretrained(tiny_model).encode("哈", add_special_tokens=False)[-1]
    chatter = build_one_token_model(tiny_model, tmp_path / "chatter", ha)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "kit.serve.hf_server", "--model", f"chatter={chatter}",
                             "--port", str(port), "--max-parallel", "1"], cwd=ROOT)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
        ask = {"model": "chatter", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1800}

        def long_request():
            try:
                httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=ask, timeout=120)
            except httpx.HTTPError:
                pass  # the server went away: expected

        for _ in range(2):
            threading.Thread(target=long_request, daemon=True).start()
        time.sleep(1.5)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert time.monotonic() - start < 8, f"stopped after {time.monotonic() - start:.1f}s"
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("option", ["--port", "--ui-port"])
def test_kit_serve_refuses_a_busy_port_before_loading(tiny_model, option):
    from kit_testing import run_kit

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy, other = taken.getsockname()[1], free_port()
        ports = {"--port": busy, "--ui-port": other} if option == "--port" else {"--port": other, "--ui-port": busy}
        start = time.monotonic()
        result = run_kit("serve", "--engine", "transformers", "--tuned", str(tiny_model),
                         *(str(x) for kv in ports.items() for x in kv))
    assert result.returncode == 2 and f"port {busy} on 127.0.0.1 is not free" in result.stderr, result.stderr
    assert option in result.stderr and time.monotonic() - start < 60


WUKONG = "你是孙悟空，自称俺老孙。" * 8


@pytest.fixture
def wukong_merged(tiny_model, tmp_path, monkeypatch):
    """A project tree with a second character (KIT_HOME) and a 'merged' model whose record names him."""
    import json
    import shutil

    home = tmp_path / "home"
    shutil.copytree(ROOT / "datasets" / "bajie", home / "datasets" / "bajie", ignore=shutil.ignore_patterns("built"))
    (home / "datasets" / "wukong").mkdir()
    (home / "datasets" / "wukong" / "persona.yaml").write_text(
        f"name: 孙悟空\nsystem_prompt: {WUKONG}\nprobe_questions: [你是谁？]\n", encoding="utf-8")
    tuned = tmp_path / "merged"
    shutil.copytree(tiny_model, tuned)
    (tuned / "kit_merge.json").write_text(json.dumps({"character": "wukong"}), encoding="utf-8")
    monkeypatch.setenv("KIT_HOME", str(home))
    return tuned


def test_kit_serve_takes_the_persona_the_tuned_model_records(wukong_merged):
    """A merged 孙悟空 served without --character is served as 孙悟空, and kit serve says so."""
    port = free_port()
    proc, out = start_kit_serve("--engine", "transformers", "--tuned", str(wukong_merged), "--no-ui",
                                "--port", str(port))
    try:
        assert f"persona: 孙悟空 (wukong, from {wukong_merged / 'kit_merge.json'})" in out, out
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", timeout=60, max_retries=0)

        def prompt_tokens(messages):
            return client.chat.completions.create(model="tuned", messages=messages, max_tokens=1).usage.prompt_tokens

        ask = [{"role": "user", "content": "你是谁？"}]
        assert prompt_tokens(ask) == prompt_tokens([{"role": "system", "content": WUKONG}, *ask])
    finally:
        proc.kill()


def test_quantize_calibrates_with_the_persona_the_model_records(wukong_merged):
    from kit_testing import run_kit

    result = run_kit("quantize", str(wukong_merged), env={"COLUMNS": "300"})
    assert f"persona: 孙悟空 (wukong, from {wukong_merged / 'kit_merge.json'})" in result.stdout, result.stdout
    override = run_kit("quantize", str(wukong_merged), "--character", "bajie", env={"COLUMNS": "300"})
    assert "was made for 'wukong'; using 'bajie' as --character asks" in override.stdout, override.stdout
