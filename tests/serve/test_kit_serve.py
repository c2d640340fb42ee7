"""`kit serve --engine transformers --no-ui` as a user runs it: prints its URL, answers the openai
client for both models, and Ctrl-C stops it and its server child."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
from kit_testing import ROOT
from serve_testing import free_port

pytestmark = pytest.mark.timeout(300)


def test_kit_serve_transformers_no_ui(tiny_model, tuned_model, tmp_path):
    port = free_port()
    kit = Path(sys.executable).parent / "kit"
    proc = subprocess.Popen([str(kit), "serve", "--engine", "transformers", "--base", str(tiny_model),
                             "--tuned", str(tuned_model), "--no-ui", "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    out, deadline = "", time.monotonic() + 240
    try:
        while "Ctrl-C stops everything" not in out:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, out
            out += line
            assert time.monotonic() < deadline, out
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
        children = subprocess.run(["pgrep", "-f", f"kit.serve.hf_server.*--port {port}"],
                                  capture_output=True, text=True).stdout.split()
        assert children
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        time.sleep(0.5)
        for pid in children:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
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
