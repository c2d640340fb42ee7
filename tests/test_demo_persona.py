"""What `make demo` shows a newcomer: the tuned tiny model speaks as 八戒 on questions it never saw in
training, the base stays a plain assistant, and no reply of either is garbled (issue 12's bar)."""

import json

from kit.data.samples import read_jsonl


def test_demo_report_shows_the_persona_taking(make_demo):
    work, _ = make_demo
    report = json.loads((work / "eval" / "report.json").read_text(encoding="utf-8"))
    metrics = report["metrics"]
    assert report["settings"]["decoding"] == "greedy"
    assert metrics["identity_consistency"]["tuned"] >= 0.8, metrics["identity_consistency"]
    assert metrics["style_marker_rate"]["tuned"] >= 0.5, metrics["style_marker_rate"]
    assert metrics["style_marker_rate"]["base"] <= 0.1, metrics["style_marker_rate"]
    assert metrics["heldout_perplexity"]["tuned"] < metrics["heldout_perplexity"]["base"]
    for side in ("base", "tuned"):
        assert metrics["style_marker_rate"]["details"][side]["garbled"] == 0, side
        replies = [g["reply"] for part in report["generations"][side].values() for g in part]
        assert replies and all(r.strip() and "\ufffd" not in r for r in replies), side


def test_unseen_questions_are_answered_in_character(make_demo):
    """Held-out prompts that appear nowhere in the training file (a script line's context can repeat):
    most of the scored ones, and the tuned model answers them with 八戒's markers, the base without."""
    work, _ = make_demo
    trained = {m["content"] for _, row in read_jsonl(work / "data" / "train.jsonl") for m in row["messages"]}
    report = json.loads((work / "eval" / "report.json").read_text(encoding="utf-8"))
    unseen = {side: [g for g in report["generations"][side]["heldout"] if g["prompt"] not in trained]
              for side in ("base", "tuned")}
    assert len(unseen["tuned"]) >= 8, [g["prompt"] for g in unseen["tuned"]]
    rate = {side: sum(bool(g["markers"]) for g in gens) / len(gens) for side, gens in unseen.items()}
    assert rate["tuned"] >= 0.5 and rate["base"] <= 0.1, (rate, unseen)
