"""report.json + report.md: every metric with a base and a tuned entry, checkpoint curves, the drift gate."""

import json
from pathlib import Path

from kit import atomic

# name -> (title, which way is better, what it measures). Order is the report's and the charts'.
METRICS = {
    "heldout_perplexity": ("Held-out perplexity", "lower",
                           "perplexity of the character's held-out replies given their context "
                           "(loss on the final assistant reply only)"),
    "style_marker_rate": ("Style-marker rate", "higher",
                          "share of generated replies using >= 1 persona style marker or catchphrase"),
    "identity_consistency": ("Identity consistency", "higher",
                             "share of probe answers that name the character and claim no generic AI identity"),
    "general_sanity": ("General sanity", "higher",
                       "share of short factual/arithmetic prompts answered with an expected substring"),
    "llm_judge": ("LLM judge (1-5)", "higher", "mean 1-5 persona-fidelity score from the judge endpoint"),
}

DRIFT_CHART = "drift.png"


def metric_entry(name: str, sides: dict[str, dict]) -> dict:
    title, better, description = METRICS[name]
    entry = {side: score["metrics"][name]["value"] for side, score in sides.items()}
    entry.update(title=title, better=better, description=description,
                 details={side: {k: v for k, v in score["metrics"][name].items() if k != "value"}
                          for side, score in sides.items()})
    return entry


def suggest_checkpoint(runs: list[dict]) -> tuple[str | None, str]:
    """The checkpoint to ship: lowest held-out perplexity (the first one past it is overfitting)."""
    for name, pick in (("heldout_perplexity", min), ("llm_judge", max), ("style_marker_rate", max)):
        scored = [r for r in runs if r["metrics"][name] is not None]
        if scored:
            best = pick(scored, key=lambda r: r["metrics"][name])  # ties: the earliest checkpoint
            return best["name"], f"{'lowest' if pick is min else 'highest'} {METRICS[name][0].lower()}"
    return None, "no metric was available for the checkpoints"


def summarize_checkpoints(checkpoints: list[dict]) -> dict:
    runs = [{"name": c["name"], "step": c["step"], "model": c["score"]["model"],
             "metrics": {n: c["score"]["metrics"][n]["value"] for n in METRICS}} for c in checkpoints]
    suggested, why = suggest_checkpoint(runs)
    return {"runs": runs, "suggested": suggested, "why": why}


def build_report(meta: dict, base: dict, tuned: dict, checkpoints: dict | None) -> dict:
    sides = {"base": base, "tuned": tuned}
    report = {**meta, "models": {side: s["model"] for side, s in sides.items()},
              "metrics": {name: metric_entry(name, sides) for name in METRICS}}
    if checkpoints:
        report["checkpoints"] = checkpoints
    report["generations"] = {side: s["generations"] for side, s in sides.items()}
    return report


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(report: dict, charts: list[str]) -> str:
    if "metrics" not in report:  # the drift gate run on its own
        return "\n".join([f"# Deployment drift: {report['persona_name']} ({report['character']})",
                          *drift_markdown(report["drift"])]) + "\n"
    m = report["models"]
    lines = [f"# Persona eval: {report['persona_name']} ({report['character']})", "",
             f"- base: `{m['base']}`", f"- tuned: `{m['tuned']}`", f"- held-out file: `{report['eval_file']}`",
             f"- decoding: greedy, max_new_tokens={report['settings']['max_new_tokens']}", "",
             "| metric | base | tuned | better |", "|---|---|---|---|"]
    for entry in report["metrics"].values():
        lines.append(f"| {entry['title']} | {_fmt(entry['base'])} | {_fmt(entry['tuned'])} | {entry['better']} |")
    # Why a value is n/a, and what a value stands on (e.g. judge answers that were lost).
    reasons = [f"- {e['title']} ({side}{'' if e[side] is None else f', {_fmt(e[side])}'}): "
               f"{e['details'][side]['reason']}" for e in report["metrics"].values()
               for side in ("base", "tuned") if e["details"][side].get("reason")]
    if reasons:
        lines += ["", "Notes:", *reasons]
    lines += ["", *[f"![{c}]({c})" for c in charts if c != DRIFT_CHART]]
    if "checkpoints" in report:
        ck = report["checkpoints"]
        names = list(METRICS)
        lines += ["", "## Checkpoints", "", f"Suggested: **{ck['suggested']}** ({ck['why']}).", "",
                  "| checkpoint | " + " | ".join(METRICS[n][0] for n in names) + " |",
                  "|---" * (len(names) + 1) + "|"]
        lines += [f"| {r['name']} | " + " | ".join(_fmt(r["metrics"][n]) for n in names) + " |"
                  for r in ck["runs"]]
    lines += ["", "## Probe answers", "", "| question | base | tuned |", "|---|---|---|"]
    for b, t in zip(report["generations"]["base"]["probes"], report["generations"]["tuned"]["probes"]):
        lines.append(f"| {_cell(b['prompt'])} | {_cell(b['reply'])} | {_cell(t['reply'])} |")
    if "drift" in report:
        lines += drift_markdown(report["drift"])
    return "\n".join(lines) + "\n"


def drift_markdown(drift: dict) -> list[str]:
    """The drift gate's section: every stage against the one before it, and each check that failed."""
    s = drift["settings"]
    lines = ["", f"## Drift gate: {'passed' if drift['passed'] else 'FAILED'}", "",
             f"Reference: **{drift['reference']}**. Each stage is compared with the stage before it on "
             f"{s['probe_questions']} probe questions and {s['heldout_contexts']} held-out contexts (greedy, "
             f"max_new_tokens={s['max_new_tokens']}); first divergence in {drift['divergence_unit']}.", "",
             "| stage | source | against | agreement | with reference | first divergence | perplexity | "
             "ppl change | style | identity | gate |", "|---" * 11 + "|"]
    by_stage = {c["stage"]: c for c in drift["comparisons"]}
    for st in drift["stages"]:
        c = by_stage.get(st["name"])
        change = None if c is None or c["perplexity_change"] is None else f"{c['perplexity_change']:+.2%}"
        cells = [st["name"] + (" (quantized)" if st["quantized"] else ""), f"`{st['source']}`",
                 *(["—"] * 3 if c is None else [c["against"], _fmt(c["agreement"]),
                                                  _fmt(c["agreement_with_reference"])]),
                 "—" if c is None else _fmt(c["mean_first_divergence"]), _fmt(st["perplexity"]),
                 "—" if c is None else _fmt(change), _fmt(st["style_marker_rate"]),
                 _fmt(st["identity_consistency"]),
                 "reference" if c is None else "pass" if c["passed"] else "**FAIL**"]
        lines.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    failed = [f"- {c['stage']} vs {c['against']}: {k['metric']} = {_fmt(k['value'])}, must be {k['rule']}"
              for c in drift["comparisons"] for k in c["checks"] if k["passed"] is False]
    unmeasured = [f"- {c['stage']}: {k['metric']} {k['rule']}"
                  for c in drift["comparisons"] for k in c["checks"] if k["passed"] is None]
    lines += ["", "Failed checks:", *failed] if failed else []
    lines += ["", "Notes:", *unmeasured] if unmeasured else []
    return lines + ["", f"![{DRIFT_CHART}]({DRIFT_CHART})"]


def write_report(report: dict, out_dir: Path, charts: list[str]) -> Path:
    report["charts"] = charts
    path = Path(out_dir) / "report.json"
    atomic.write_text(path, json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    atomic.write_text(Path(out_dir) / "report.md", to_markdown(report, charts))
    return path
