"""Reaching served models and the judge: keys go only where they were named, and a dead, locked or
broken server is an error that names its URL and the fix, never a traceback. Fakes on loopback."""

import json
import sys

import pytest

from kit.errors import KitError
from kit.keys import is_loopback
from kit.eval.backends import Endpoint
from kit.eval.judge import Judge, JudgeConfig
from kit.persona import persona_for
from kit_testing import run_kit

BAJIE = persona_for("bajie")
# What the environment of a developer with an OpenAI account holds; none of it may leave for a fake.
LEAKABLE = {"OPENAI_API_KEY": "sk-leak-openai", "OPENAI_ADMIN_KEY": "sk-leak-admin", "OPENAI_ORG_ID": "org-leak",
            "OPENAI_PROJECT_ID": "proj-leak", "KIT_EVAL_API_KEY": "sk-leak-eval", "KIT_JUDGE_API_KEY": "sk-leak-judge"}


def in_character(messages, max_tokens):
    return f"{BAJIE.style_markers[0]}是{BAJIE.name}。"


def grade_five(messages, max_tokens):
    return '{"score": 5, "reason": "in character"}'


def eval_file(tmp_path):
    path = tmp_path / "eval.jsonl"
    messages = [{"role": "system", "content": BAJIE.system_prompt}, {"role": "user", "content": "师父呢？"},
                {"role": "assistant", "content": "俺老猪也不知道。"}]
    path.write_text(json.dumps({"messages": messages}, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def sent(server) -> str:
    return json.dumps(server.headers)


def kit_eval(base, tuned, tmp_path, *options, env=None):
    return run_kit("eval", "--base", base, "--tuned", tuned, "--eval-file", str(eval_file(tmp_path)),
                   "--out", str(tmp_path / "out"), "--max-new-tokens", "8", "--gen-limit", "1", *options,
                   env={"COLUMNS": "200", **(env or {})})


def test_each_url_gets_only_the_key_named_for_it(serve, tmp_path):
    served, grader = serve(in_character, key="serve-secret"), serve(grade_five, key="judge-secret")
    result = kit_eval(f"{served.url}#fake", f"{served.url}#fake", tmp_path, "--api-key-env", "SERVE_KEY",
                      "--judge-url", grader.url, "--judge-model", "fake", "--judge-key-env", "JUDGE_KEY",
                      env={**LEAKABLE, "SERVE_KEY": "serve-secret", "JUDGE_KEY": "judge-secret"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert {h["authorization"] for h in served.headers} == {"Bearer serve-secret"}
    assert {h["authorization"] for h in grader.headers} == {"Bearer judge-secret"}
    for leak in LEAKABLE.values():
        assert leak not in sent(served) + sent(grader) + result.stdout + result.stderr, leak
    report = (tmp_path / "out" / "report.json").read_text(encoding="utf-8")
    assert "secret" not in report and "leak" not in report


def test_no_key_leaves_when_none_was_named(serve, tmp_path, monkeypatch):
    for name, value in LEAKABLE.items():
        monkeypatch.setenv(name, value)
    served, grader = serve(in_character), serve(grade_five)
    Endpoint(served.url).generate([{"role": "user", "content": "你是谁？"}], 8)
    Judge(JudgeConfig(grader.url, "fake"), BAJIE).grade([("你是谁？", "俺老猪")])
    for server in (served, grader):
        assert {h.get("authorization") for h in server.headers} == {"Bearer EMPTY"}  # a placeholder
        assert not any(h.startswith("openai-") for hs in server.headers for h in hs)
        for leak in LEAKABLE.values():
            assert leak not in sent(server)


@pytest.fixture
def connections():
    """Every socket connect this process attempts while the test runs (an audit hook cannot be removed:
    it records only while the list is open)."""
    seen: list = []
    state = {"on": True}

    def hook(event, args):
        if event == "socket.connect" and state["on"]:
            seen.append(args[1])

    sys.addaudithook(hook)
    yield seen
    state["on"] = False


def test_a_key_never_goes_over_plain_http_to_another_host(monkeypatch, connections):
    monkeypatch.setenv("SERVE_KEY", "serve-secret")
    with pytest.raises(KitError, match=r"refusing to send that key over plain http to http://10\.0\.0\.1:8000/v1") as e:
        Endpoint("http://10.0.0.1:8000/v1#m", "SERVE_KEY")
    assert "https://" in e.value.fix and "127.0.0.1" in e.value.fix and "serve-secret" not in str(e.value)
    with pytest.raises(KitError, match="--judge-key-env JUDGE_KEY: refusing .* http://judge.example.com/v1"):
        Judge(JudgeConfig("http://judge.example.com/v1", "m", "JUDGE_KEY"), BAJIE)
    assert connections == []


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.3.2.1", True), ("localhost", True),
                                            ("::1", True), ("10.0.0.1", False), ("example.com", False),
                                            ("127.0.0.1.nip.io", False), (None, False)])
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


def test_a_named_key_variable_that_is_not_set(serve, monkeypatch):
    monkeypatch.delenv("SERVE_KEY", raising=False)
    with pytest.raises(KitError, match="--api-key-env SERVE_KEY: that environment variable is not set") as e:
        Endpoint(serve(in_character).url, "SERVE_KEY")
    assert "export SERVE_KEY=" in e.value.fix


def test_a_locked_server_says_which_option_gives_the_key(serve, monkeypatch):
    locked = serve(in_character, key="serve-secret")
    for url in (locked.url, f"{locked.url}#fake"):  # a named model skips /models, not the key check
        with pytest.raises(KitError, match=f"HTTP 401 from {locked.url}: it wants a key, and none was sent") as e:
            Endpoint(url)
        assert "--api-key-env" in e.value.fix
    monkeypatch.setenv("WRONG", "not-it")
    with pytest.raises(KitError, match=r"HTTP 401 from .*: it refused the key in \$WRONG") as e:
        Endpoint(locked.url, "WRONG")
    assert "--api-key-env" in e.value.fix
    with pytest.raises(KitError, match=f"HTTP 401 from {locked.url}: it wants a key") as e:
        Judge(JudgeConfig(locked.url, "fake"), BAJIE)
    assert "--judge-key-env" in e.value.fix


def test_nothing_listening_is_one_clear_paragraph(serve, tmp_path):
    dead = serve(in_character)
    dead.close()
    result = kit_eval(f"{dead.url}#base", f"{dead.url}#tuned", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    error = result.stderr[result.stderr.index("error:"):]
    assert f"no OpenAI-compatible server answers at {dead.url}" in error and "kit serve" in error
    assert len(error.strip().splitlines()) <= 3, error
    with pytest.raises(KitError, match=f"no OpenAI-compatible server answers at {dead.url}") as e:
        Judge(JudgeConfig(dead.url, "fake"), BAJIE)  # before any model is scored, not after
    assert "--judge-url" in e.value.fix


def test_every_server_is_reached_before_any_work(serve, tmp_path):
    from kit.eval.run import evaluate_models

    live, dead = serve(in_character), serve(in_character)
    dead.close()
    with pytest.raises(KitError, match=f"no OpenAI-compatible server answers at {dead.url}"):
        evaluate_models(live.url, dead.url, "bajie", eval_file(tmp_path), tmp_path / "out")
    assert live.requests == []  # not one generation spent on the base


CUT = b'{"id": "c", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assi'
PAGE = b"<html><body>" + b"Bad gateway " * 40 + b"</body></html>"


def test_broken_judge_answers_are_retried_then_counted_with_what_came_back(serve):
    calls = {}

    def judge(messages, max_tokens):
        reply = messages[-1]["content"].split("REPLY:\n")[1]
        calls[reply] = calls.get(reply, 0) + 1
        if reply == "glitch" and calls[reply] == 1:
            return CUT  # cut once on the way: the retry gets the answer
        return {"cut": CUT, "page": PAGE}.get(reply, '{"score": 4}')

    grader = serve(judge)
    result = Judge(JudgeConfig(grader.url, "fake"), BAJIE).grade(
        [("q", "fine"), ("q", "glitch"), ("q", "cut"), ("q", "page")])
    assert (result.mean, result.scored, result.unscored) == (4.0, 2, 2)
    assert calls == {"fine": 1, "glitch": 2, "cut": 2, "page": 2}
    assert result.reason.startswith(f"2 of 4 judge answers were no chat completion, twice each; "
                                    f"the first: {grader.url} answered no chat completion: ")
    assert '"role": "assi' in result.reason  # what came back, quoted
    assert len(result.reason) < 400


def test_a_model_that_answers_no_chat_completion(serve):
    broken = serve(lambda messages, n: PAGE)
    with pytest.raises(KitError, match=f"{broken.url} answered no chat completion: '<html><body>Bad gateway") as e:
        Endpoint(broken.url).generate([{"role": "user", "content": "你是谁？"}], 8)
    assert len(str(e.value)) < 400 and "/v1" in e.value.fix


def test_a_broken_judge_answer_is_a_note_in_the_summary_and_the_report(serve, tmp_path):
    def judge(messages, max_tokens):
        question, reply = messages[-1]["content"].split("\n\nREPLY:\n")
        return PAGE if BAJIE.probe_questions[0] in question and BAJIE.name in reply else '{"score": 4}'

    base, tuned, grader = serve(lambda m, n: "我是一个人工智能助手。"), serve(in_character), serve(judge)
    result = kit_eval(base.url, tuned.url, tmp_path, "--judge-url", grader.url, "--judge-model", "fake")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    note = f"1 of {len(BAJIE.probe_questions) + 1} judge answers were no chat completion, twice each; the first: " \
           f"{grader.url} answered no chat completion: '<html><body>Bad gateway"
    assert f"note: LLM judge (1-5) (tuned): {note}" in " ".join(result.stdout.split())
    assert f"- LLM judge (1-5) (tuned, 4.000): {note}" in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
