"""`kit data generate` against a real OpenAI-compatible server on loopback (tests/data/conftest.py).

The server answers with latency, 429s, 500s, broken bodies, stalls past the timeout, non-JSON and
near-duplicate dialogues; the generator is SIGKILLed mid-run and run again.
"""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from kit_testing import ROOT, run_kit
from rich.console import Console

from kit.data import generate as generate_module
from kit.data.check import line_problems
from kit.data.dialogue_json import parse_dialogue
from kit.persona import persona_for

N = 24


def _args(base_url: str, out: Path, *extra: str) -> list[str]:
    return ["data", "generate", "--persona", str(ROOT / "datasets/bajie/persona.yaml"), "-n", str(N),
            "--base-url", base_url, "--model", "test-model", "-o", str(out), "--concurrency", "4",
            "--timeout", "1", *extra]


def _cache_keys(path: Path) -> list[str]:
    keys = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            keys.append(json.loads(line)["key"])
        except json.JSONDecodeError:
            pass  # the line being written when the process died
    return keys


def test_killed_mid_run_then_resumed_loses_and_repeats_nothing(openai_server, tmp_path):
    base_url, log = openai_server
    out, cache = tmp_path / "dialogues.jsonl", tmp_path / "dialogues.jsonl.cache.jsonl"
    env = {**os.environ, "OPENAI_API_KEY": log.api_key}
    kit = Path(sys.executable).parent / "kit"
    proc = subprocess.Popen([str(kit), *_args(base_url, out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (cache.exists() and len(_cache_keys(cache)) >= 8):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "generator made no progress"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = set(_cache_keys(cache))
    arrivals_before = len(log.order)
    assert not out.exists(), "a killed run must not leave an output file"

    result = run_kit(*_args(base_url, out), env={"OPENAI_API_KEY": log.api_key}, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr

    # No finished call was sent again; within the second run nothing finished twice.
    second_run = [key for key, _ in log.order[arrivals_before:]]
    assert not finished_before & set(second_run)
    ok_twice = [k for k, n in log.finished.items() if n > 1]
    assert len(ok_twice) <= 4, ok_twice  # at most the calls in flight at the moment of the kill
    keys = _cache_keys(cache)
    assert len(keys) == len(set(keys)), "cache holds a call twice"
    # Every fault happened and was survived; the key never reached disk or output.
    assert set(log.faults) == {"429", "500", "broken body", "stall"}, log.faults
    assert log.bad_auth == 0
    for text in (cache.read_text(encoding="utf-8"), out.read_text(encoding="utf-8"),
                 result.stdout, result.stderr):
        assert log.api_key not in text

    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == N
    replies = ["\n".join(m["content"] for m in r["messages"] if m["role"] == "assistant") for r in rows]
    assert len(set(replies)) == N
    assert sum("十个大馒头" in r for r in replies) <= 1, "near duplicates kept"
    assert all(r["messages"][0]["role"] == "system" and r["messages"][-1]["role"] == "assistant"
               for r in rows)
    assert line_problems(out, persona_for("bajie").system_prompt) == []


def test_token_cap_stops_sending(openai_server, tmp_path):
    base_url, log = openai_server
    log.latency = (0.0, 0.01)
    out = tmp_path / "capped.jsonl"
    # Each finished call costs 150 tokens at the server; a cap of 600 allows 4 (+ the 4 in flight).
    result = run_kit(*_args(base_url, out, "--max-total-tokens", "600", "--price-in", "2",
                            "--price-out", "8"), env={"OPENAI_API_KEY": log.api_key}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 4 <= sum(log.finished.values()) <= 8
    assert "token cap 600 reached" in result.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) < N


def test_parse_dialogue_accepts_the_usual_shapes_and_rejects_the_rest():
    names = {"猪八戒", "八戒"}
    fenced = '好的\n```json\n{"dialogue": [{"role": "user", "content": "饿吗"},\n {"role": "八戒", "content": "饿！"},]}\n```'
    assert parse_dialogue(fenced, names) == [("饿吗", "饿！")]
    pairs = '[{"user": "你是谁", "assistant": "俺老猪"}, {"user": "去哪", "assistant": "西天"}]'
    assert parse_dialogue(pairs, names) == [("你是谁", "俺老猪"), ("去哪", "西天")]
    for bad in ("对不起，我不能写。", '{"dialogue": [{"role": "user", "content": "只有提问"}]}',
                '{"dialogue": [{"role": "旁白", "content": "夜深了"}]}'):
        try:
            parse_dialogue(bad, names)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def test_output_may_not_be_the_cache_the_persona_or_a_folder(openai_server, tmp_path):
    base_url, log = openai_server
    cache = tmp_path / "calls.jsonl"
    cache.write_text('{"key": "k", "index": 0, "content": "paid for"}\n', encoding="utf-8")
    persona = tmp_path / "persona.yaml"
    shutil.copy(ROOT / "datasets/bajie/persona.yaml", persona)
    env = {"OPENAI_API_KEY": log.api_key, "COLUMNS": "400"}  # wide: no message is wrapped
    for out, extra, what in ((cache, ["--cache", str(cache)], "cache"), (persona, [], "persona file")):
        args = _args(base_url, out, *extra)
        args[args.index("--persona") + 1] = str(persona)
        result = run_kit(*args, env=env)
        assert result.returncode == 2, result.stderr
        assert f"-o {out} is the {what}" in result.stderr
    result = run_kit(*_args(base_url, tmp_path), env=env)
    assert result.returncode == 2, result.stderr
    assert f"-o {tmp_path}: is a folder" in result.stderr
    assert cache.read_text(encoding="utf-8") == '{"key": "k", "index": 0, "content": "paid for"}\n'
    assert persona.read_bytes() == (ROOT / "datasets/bajie/persona.yaml").read_bytes()
    assert log.order == [], "calls were paid for before the run was refused"


def test_a_failed_run_never_empties_the_output(openai_server, tmp_path):
    base_url, log = openai_server
    out, fresh = tmp_path / "kept.jsonl", tmp_path / "fresh.jsonl"
    out.write_text("the last good run\n", encoding="utf-8")
    wide = {"COLUMNS": "400"}  # no message is wrapped
    for path in (out, fresh):  # a key the server refuses: nothing finishes
        result = run_kit(*_args(base_url, path), env={"OPENAI_API_KEY": "sk-wrong", **wide})
        assert result.returncode == 2, result.stderr
        assert "refused the key (401)" in result.stderr and "left as it was" in result.stderr
    assert out.read_text(encoding="utf-8") == "the last good run\n"
    assert not fresh.exists()

    # One dialogue finishes, then a 429 with no retries left stops the run: that one is written.
    result = run_kit(*_args(base_url, out, "--concurrency", "1", "--retries", "0"),
                     env={"OPENAI_API_KEY": log.api_key, **wide})
    assert result.returncode == 2, result.stderr
    assert "the API failed 1 times in a row (last: HTTP 429)" in result.stderr
    assert f"1/{N} dialogues → {out}" in result.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1


def test_a_day_long_retry_after_is_capped_and_said(openai_server, tmp_path, monkeypatch):
    base_url, log = openai_server
    log.retry_after, log.latency = "86400", (0.0, 0.01)
    monkeypatch.setattr(generate_module, "MAX_RETRY_AFTER", 0.5)  # the cap itself: 60 s
    monkeypatch.setenv("OPENAI_API_KEY", log.api_key)
    console = Console(file=io.StringIO(), width=300)
    settings = generate_module.Settings(model="test-model", base_url=base_url, n=4, timeout=1)
    written = []
    run = threading.Thread(target=lambda: written.append(generate_module.generate(
        persona_for("bajie"), settings, tmp_path / "d.jsonl", console=console)), daemon=True)
    run.start()
    run.join(60)
    assert written, "the run waited out the server's Retry-After"
    assert log.faults["429"] >= 1
    assert "127.0.0.1 asked to wait 86400 s (Retry-After); waiting 0.5 s" in console.file.getvalue()


def test_a_key_never_goes_over_plain_http_to_another_host(tmp_path):
    """The key would cross the network readable by anyone on the way: refused before any connection."""
    persona = ROOT / "datasets" / "bajie" / "persona.yaml"
    result = run_kit("data", "generate", "--persona", str(persona), "-n", "1", "--base-url", "http://10.0.0.1:8000/v1",
                     "--model", "m", "-o", str(tmp_path / "out.jsonl"), env={"OPENAI_API_KEY": "sk-secret",
                                                                             "COLUMNS": "300"})
    assert result.returncode == 2 and "refusing to send that key over plain http" in result.stderr, result.stderr
    assert "sk-secret" not in result.stdout + result.stderr and not (tmp_path / "out.jsonl").exists()
