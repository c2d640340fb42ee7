"""Score one model (base, tuned or a checkpoint) on every persona metric, keeping its replies."""

from dataclasses import asdict, dataclass

from kit.eval.general import general_accuracy, is_correct
from kit.eval.identity import identity_consistency
from kit.eval.judge import Judge
from kit.eval.perplexity import heldout_perplexity
from kit.eval.samples import GeneralItem, Sample
from kit.eval.style import markers_in, persona_markers, style_marker_rate
from kit.persona import Persona


@dataclass
class EvalSettings:
    max_new_tokens: int = 48  # small: CPU runs stay fast, and style shows in the first sentence
    gen_limit: int = 12  # held-out contexts to generate replies for (besides the probe questions)
    ppl_limit: int | None = None  # held-out samples for perplexity (None: all)


def work_units(persona: Persona, samples: list[Sample], general: list[GeneralItem],
               settings: EvalSettings, judged: bool) -> int:
    """Progress-bar total for one model: every forward pass or generation it will make."""
    ppl = len(samples[:settings.ppl_limit])
    gens = len(persona.probe_questions) + len(samples[:settings.gen_limit])
    return ppl + gens + len(general) + (gens if judged else 0)


def persona_answers(model, persona: Persona, samples: list[Sample], settings, advance=lambda: None):
    """What every persona metric reads, and the drift gate compares: held-out perplexity, and the greedy
    (prompt, reply) pairs for the probe questions (under the persona's system prompt) and held-out contexts."""
    ppl = heldout_perplexity(model, samples[:settings.ppl_limit], advance)
    probes = [(q, ask(model, settings, persona_turn(persona, q), advance)) for q in persona.probe_questions]
    heldout = [(s.context[-1]["content"], ask(model, settings, s.context, advance))
               for s in samples[:settings.gen_limit]]
    return ppl, probes, heldout


def ask(model, settings, messages: list[dict], advance) -> str:
    reply = model.generate(messages, settings.max_new_tokens)
    advance()
    return reply


def persona_turn(persona: Persona, prompt: str) -> list[dict]:
    return [{"role": "system", "content": persona.system_prompt}, {"role": "user", "content": prompt}]


def score_model(model, persona: Persona, samples: list[Sample], general: list[GeneralItem],
                settings: EvalSettings, judge: Judge | None = None, advance=lambda: None) -> dict:
    ppl, probes, heldout = persona_answers(model, persona, samples, settings, advance)
    general_replies = [ask(model, settings, persona_turn(persona, g.prompt), advance) for g in general]

    replies = [r for _, r in probes + heldout]
    style = style_marker_rate(replies, persona)
    identity = identity_consistency([r for _, r in probes], persona)
    markers = persona_markers(persona)
    metrics = {
        "heldout_perplexity": {"value": ppl.value, "tokens": ppl.tokens, "samples": ppl.samples,
                               "reason": ppl.reason},
        "style_marker_rate": {"value": style.rate, **_without(asdict(style), "rate")},
        "identity_consistency": {"value": identity.rate, **_without(asdict(identity), "rate")},
        "general_sanity": {"value": general_accuracy(general_replies, general), "items": len(general)},
        "llm_judge": {"value": None, "reason": "no --judge-url given"},
    }
    if judge is not None:
        verdict = judge.grade(probes + heldout, advance)
        metrics["llm_judge"] = {"value": verdict.mean, "scored": verdict.scored,
                                "unscored": verdict.unscored, "reason": verdict.reason}
    generations = {
        "probes": [{"prompt": q, "reply": r, "markers": markers_in(r, markers)} for q, r in probes],
        "heldout": [{"prompt": q, "reply": r, "markers": markers_in(r, markers)} for q, r in heldout],
        "general": [{"prompt": g.prompt, "reply": r, "correct": is_correct(r, g)}
                    for g, r in zip(general, general_replies)],
    }
    return {"model": model.label, "metrics": metrics, "generations": generations}


def _without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}
