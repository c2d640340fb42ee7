"""The whole eval over HTTP: scripted base/tuned servers and a fake LLM judge, all on loopback."""

import json

from kit.eval.judge import JudgeConfig
from kit.eval.run import evaluate_models
from kit.eval.score import EvalSettings
from kit.persona import persona_for

BAJIE = persona_for("bajie")


def assistant(messages, max_tokens):
    return "我是书生·浦语，一个人工智能助手。1加1等于2。"


def in_character(messages, max_tokens):
    return f"{BAJIE.style_markers[0]}是{BAJIE.name}，{BAJIE.catchphrases[1]}"


def judge(messages, max_tokens):
    # Grades by the reply alone: in his voice 5, else 2; one probe gets a verdict with no score.
    question, reply = messages[-1]["content"].split("\n\nREPLY:\n")
    if BAJIE.probe_questions[-1] in question:
        return "I cannot tell"
    return '{"score": 5, "reason": "in character"}' if BAJIE.style_markers[0] in reply else '{"score": 2}'


def test_eval_over_endpoints_with_judge(eval_models, serve, tmp_path):
    base, tuned, grader = serve(assistant), serve(in_character), serve(judge, model="judge-m")
    report_path = evaluate_models(base.url, tuned.url, "bajie", eval_models.eval_file, tmp_path / "eval",
                                  settings=EvalSettings(max_new_tokens=8, gen_limit=3),
                                  judge=JudgeConfig(grader.url, "judge-m"))
    report = json.loads(report_path.read_text(encoding="utf-8"))
    m = report["metrics"]
    assert (m["style_marker_rate"]["base"], m["style_marker_rate"]["tuned"]) == (0.0, 1.0)
    assert (m["identity_consistency"]["base"], m["identity_consistency"]["tuned"]) == (0.0, 1.0)
    assert (m["llm_judge"]["base"], m["llm_judge"]["tuned"]) == (2.0, 5.0)
    assert m["llm_judge"]["details"]["tuned"]["unscored"] == 1
    assert m["general_sanity"]["base"] > m["general_sanity"]["tuned"] == 0.0
    # Servers without /v1/completions: perplexity is absent with the reason, never invented.
    assert m["heldout_perplexity"]["base"] is None
    assert "log-probs" in m["heldout_perplexity"]["details"]["tuned"]["reason"]
    # The judge saw the stated rubric with the persona, once per probe and generated held-out reply.
    judged = [body for path, body in grader.requests if path == "/v1/chat/completions"]
    assert len(judged) == 2 * (len(BAJIE.probe_questions) + 3)
    assert all(b["model"] == "judge-m" and BAJIE.system_prompt in b["messages"][0]["content"] for b in judged)
    assert report["rubrics"]["judge"] == judged[0]["messages"][0]["content"]
    # Every request to the models under test carried the persona system prompt and greedy decoding.
    asked = [body for path, body in tuned.requests if path == "/v1/chat/completions"]
    assert all(b["temperature"] == 0 and b["max_tokens"] == 8 for b in asked)
    assert all(b["messages"][0] == {"role": "system", "content": BAJIE.system_prompt} for b in asked)
    assert (tmp_path / "eval" / "metrics.png").stat().st_size > 10_000
