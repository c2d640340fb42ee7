"""The scoring rules on their own: style markers, the identity rubric, general sanity, judge parsing,
eval-file validation and checkpoint discovery."""

import json

import pytest

from kit.errors import KitError
from kit.eval.checkpoints import find_checkpoints
from kit.eval.general import general_accuracy
from kit.eval.identity import generic_claims, identity_consistency
from kit.eval.judge import parse_score, rubric
from kit.eval.samples import load_general_set, load_samples
from kit.eval.style import persona_markers, style_marker_rate
from kit.persona import persona_for

BAJIE = persona_for("bajie")


def test_style_markers_come_from_the_persona():
    markers = persona_markers(BAJIE)
    assert set(BAJIE.style_markers) <= set(markers) and set(BAJIE.catchphrases) <= set(markers)
    result = style_marker_rate([f"{BAJIE.style_markers[0]}饿了", "今天天气不错。", "我是一个助手。",
                                BAJIE.catchphrases[-1]], BAJIE)
    assert result.rate == 0.5 and result.replies == 4
    # Noise that happens to contain a marker is no speech in his voice.
    assert style_marker_rate([f"撒野\ufffd{BAJIE.style_markers[0]}\ufffd徒"], BAJIE).rate == 0


@pytest.mark.parametrize("reply, consistent", [
    ("俺老猪便是猪八戒，天蓬元帅下凡。", True),
    ("俺老猪可不是什么人工智能，俺是八戒！", True),  # a denial, not a claim
    ("我是书生·浦语，一个人工智能助手。", False),
    ("八戒？我其实是一个AI语言模型。", False),  # names him but claims the generic identity
    ("我是一个乐于助人的朋友。", False),  # never names the character
    ("I am InternLM, an AI assistant.", False),
    ("撒野\ufffd俺老猪当然咕\ufffd\ufffd", False),  # garbled bytes name no one
])
def test_identity_rubric(reply, consistent):
    assert identity_consistency([reply], BAJIE).rate == float(consistent)


def test_latin_terms_match_whole_words_only():
    assert generic_claims("He said it was fine") == []
    assert generic_claims("this is an AI") == ["AI"]


def test_general_set_ships_and_scores_by_substring():
    items = load_general_set()
    assert len(items) >= 8
    replies = [item.expect[0] for item in items[:4]] + ["不知道"] * (len(items) - 4)
    assert general_accuracy(replies, items) == pytest.approx(4 / len(items))


def test_judge_rubric_and_parsing():
    text = rubric(BAJIE)
    assert BAJIE.name in text and BAJIE.system_prompt in text and "1 to 5" in text
    assert parse_score('{"score": 4, "reason": "in voice"}') == 4
    assert parse_score('Sure. ```json\n{"score": 2}\n```') == 2
    assert parse_score("Score: 5 - great") == 5
    assert parse_score('{"score": 9}') is None and parse_score("no idea") is None


def test_eval_file_errors_name_file_and_line(tmp_path):
    path = tmp_path / "eval.jsonl"
    good = {"messages": [{"role": "user", "content": "你是谁？"}, {"role": "assistant", "content": "俺老猪"}]}
    bad = {"messages": [{"role": "assistant", "content": "俺老猪"}, {"role": "user", "content": "嗯"}]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(KitError, match=f"{path}:2: the last turn must be"):
        load_samples(path)
    path.write_text(json.dumps(good) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(KitError, match=f"{path}:2: not valid JSON"):
        load_samples(path)
    with pytest.raises(KitError, match="eval file not found"):
        load_samples(tmp_path / "missing.jsonl")


def test_checkpoints_found_in_step_order(tmp_path):
    for name in ("checkpoint-30", "checkpoint-5", "checkpoint-100"):
        (tmp_path / "run" / name).mkdir(parents=True)
        (tmp_path / "run" / name / "adapter_config.json").write_text("{}")
    (tmp_path / "run" / "logs").mkdir()
    assert [c.step for c in find_checkpoints([tmp_path / "run"])] == [5, 30, 100]
    with pytest.raises(KitError, match="no checkpoints in it"):
        find_checkpoints([tmp_path / "run" / "logs"])


def test_xtuner_work_dir_checkpoints_are_exported_then_scored(tmp_path, monkeypatch):
    """iter_N.pth are found in step order with the work dir's config, and exported only when scored."""
    import kit.convert.adapter
    from kit.eval.checkpoints import as_model_folder

    work = tmp_path / "work"
    work.mkdir()
    for name in ("iter_20.pth", "iter_5.pth", "last_checkpoint", "bajie.py"):
        (work / name).write_text("x")
    found = find_checkpoints([work])
    assert [(c.name, c.step, c.config) for c in found] == [("iter_5", 5, work / "bajie.py"),
                                                          ("iter_20", 20, work / "bajie.py")]
    calls = []
    monkeypatch.setattr(kit.convert.adapter, "export_adapter", lambda *args: calls.append(args))
    folder = as_model_folder(found[0], tmp_path / "base", tmp_path / "scratch")
    assert calls == [(work / "bajie.py", work / "iter_5.pth", tmp_path / "base", folder)]
