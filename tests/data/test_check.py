"""`kit data check` on a corpus of broken files: the right FILE:LINE and reason, exit 1; valid: exit 0."""

import json

from kit_testing import run_kit

from kit.data.check import line_problems, repeat_warnings

SYSTEM = {"role": "system", "content": "你是猪八戒。"}


def _line(*messages) -> bytes:
    return json.dumps({"messages": list(messages)}, ensure_ascii=False).encode() + b"\n"


GOOD = _line(SYSTEM, {"role": "user", "content": "你是谁？"}, {"role": "assistant", "content": "俺老猪是也。"})

# (what is broken, the bad line's bytes, words the reason must contain)
BROKEN = [
    ("truncated JSON", GOOD[:-25] + b"\n", "not valid JSON"),
    ("wrong role", _line(SYSTEM, {"role": "human", "content": "你好"},
                         {"role": "assistant", "content": "嘿嘿"}), "unknown role 'human'"),
    ("no final reply", _line(SYSTEM, {"role": "user", "content": "你好"}), "no final assistant reply"),
    ("empty content", _line(SYSTEM, {"role": "user", "content": "你好"},
                            {"role": "assistant", "content": "  "}), "empty content"),
    ("invalid UTF-8", GOOD.replace("俺".encode(), b"\xff\xfe"), "not UTF-8"),
    ("turns out of order", _line(SYSTEM, {"role": "assistant", "content": "嘿嘿"},
                                 {"role": "assistant", "content": "哈哈"}), "expected a user turn"),
    ("no system prompt", _line({"role": "user", "content": "你好"},
                               {"role": "assistant", "content": "嘿嘿"}), "no system prompt"),
    # XTuner trains on no reply whose "loss" is false, and reads anything but true as false.
    ("nothing to learn", _line(SYSTEM, {"role": "user", "content": "你好"},
                               {"role": "assistant", "content": "嘿嘿", "loss": False}), "nothing to learn"),
    ("loss not a boolean", _line(SYSTEM, {"role": "user", "content": "你好"},
                                 {"role": "assistant", "content": "嘿嘿", "loss": "yes"}),
     '"loss" must be true or false'),
]


def test_check_names_the_line_of_every_problem(tmp_path):
    # One file per problem, the bad line third of five, plus one file holding all of them.
    for name, bad, reason in BROKEN:
        path = tmp_path / f"{name.replace(' ', '_')}.jsonl"
        path.write_bytes(GOOD * 2 + bad + GOOD * 2)
        result = run_kit("data", "check", str(path))
        assert result.returncode == 1, (name, result.stdout, result.stderr)
        assert result.stdout.splitlines() == [result.stdout.splitlines()[0]], (name, result.stdout)
        assert result.stdout.startswith(f"{path}:3: ") and reason in result.stdout, (name, result.stdout)


def test_check_passes_a_valid_file_through_xtuner(tmp_path):
    path = tmp_path / "good.jsonl"
    path.write_bytes(GOOD * 3)
    result = run_kit("data", "check", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "loads through XTuner" in result.stderr


def test_check_against_the_persona_prompt(tmp_path):
    from kit_testing import ROOT

    path = tmp_path / "good.jsonl"
    path.write_bytes(GOOD)
    result = run_kit("data", "check", str(path), "--persona", str(ROOT / "datasets/bajie/persona.yaml"))
    assert result.returncode == 1
    assert f"{path}:1: system prompt differs from persona.yaml's" in result.stdout


def test_check_keeps_a_sample_with_one_reply_to_learn(tmp_path):
    # The usual multi-turn form: earlier replies as context ("loss": false), the last one trained on.
    path = tmp_path / "context.jsonl"
    path.write_bytes(_line(SYSTEM, {"role": "user", "content": "你好"},
                           {"role": "assistant", "content": "嘿嘿", "loss": False},
                           {"role": "user", "content": "你是谁？"}, {"role": "assistant", "content": "俺老猪是也。"}))
    assert line_problems(path) == []


def test_check_warns_of_repeated_samples_with_their_lines(tmp_path):
    other = _line(SYSTEM, {"role": "user", "content": "饿不饿？"}, {"role": "assistant", "content": "饿得慌！"})
    # The same sample written differently: keys in another order, no spaces.
    reordered = json.dumps({"messages": [dict(reversed(m.items())) for m in json.loads(GOOD)["messages"]]},
                           separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    path = tmp_path / "twice.jsonl"
    path.write_bytes(GOOD + other + GOOD + other + reordered)
    result = run_kit("data", "check", str(path))
    # A warning, not a problem: `kit data build` repeats samples by weight on purpose.
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr
    assert f"{path}:3: warning: 3 sample(s) repeat an earlier line exactly: " \
           "lines 3 (= line 1), 4 (= line 2), 5 (= line 1)" in result.stderr, result.stderr
    path.write_bytes(GOOD + other)
    assert repeat_warnings(path) == []
    # In `kit data build`'s output the repeats are its source weights (card.json says so): no warning.
    path.write_bytes(GOOD + GOOD)
    assert repeat_warnings(path)
    (tmp_path / "card.json").write_text("{}", encoding="utf-8")
    assert repeat_warnings(path) == []
