"""`kit eval`."""

from pathlib import Path

import typer
from rich.console import Console

from kit.errors import KitError


def evaluate(
    base: str = typer.Option(None, "--base", help="Base model: a local folder or an OpenAI-compatible URL "
                             "(http://HOST:PORT/v1, optionally #MODEL)."),
    tuned: str = typer.Option(None, "--tuned", help="Tuned model: a folder (merged) or a URL."),
    character: str = typer.Option(None, "--character", help="Folder under datasets/ with persona.yaml "
                                  "[default: the one the tuned model records (kit_merge.json)]."),
    eval_file: Path = typer.Option(None, "--eval-file",
                                   help="Held-out `messages` JSONL [default: datasets/CHARACTER/built/eval.jsonl]."),
    out: Path = typer.Option(Path("eval"), "--out", help="Where report.json, report.md and the PNGs go."),
    api_key_env: str = typer.Option(None, "--api-key-env", help="Environment variable holding the key of the "
                                    "served --base/--tuned (as given to `kit serve --api-key-env`); "
                                    "without it no key is sent."),
    judge_url: str = typer.Option(None, "--judge-url", help="OpenAI-compatible judge endpoint (optional)."),
    judge_model: str = typer.Option(None, "--judge-model", help="Model name at the judge endpoint."),
    judge_key_env: str = typer.Option(None, "--judge-key-env", help="Environment variable holding the "
                                      "judge's key; without it no key is sent."),
    checkpoints: list[Path] = typer.Option(None, "--checkpoints", help="A run folder, or model/adapter "
                                           "folders (repeat the option); adapters sit on --base."),
    max_new_tokens: int = typer.Option(48, min=1, help="Greedy reply length for the generated metrics."),
    gen_limit: int = typer.Option(12, min=0, help="Held-out contexts to generate replies for."),
    ppl_limit: int = typer.Option(None, min=1, help="Held-out samples for perplexity [default: all]."),
    drift: bool = typer.Option(False, "--drift", help="The drift gate: compare the STAGEs of one trained "
                               "model, each with the one before; exit 1 when one drifts."),
    stages: list[str] = typer.Argument(None, metavar="STAGE", show_default=False,
                                       help="With --drift, in deployment order: adapter folder (on --base or "
                                       "the base it records), merged folder, served URLs "
                                       "(http://HOST:PORT/v1#MODEL); NAME=… names a stage."),
    min_agreement: float = typer.Option(0.9, min=0, max=1, help="--drift: least share of identical greedy "
                                        "replies to the stage before."),
    min_agreement_quantized: float = typer.Option(0.5, min=0, max=1, help="--drift: the same for a stage "
                                                  "whose name says it is quantized (w4a16, awq, int8, kv, …)."),
    max_ppl_change: float = typer.Option(0.01, min=0, help="--drift: largest relative change of held-out "
                                         "perplexity from the stage before, either way."),
    max_ppl_change_quantized: float = typer.Option(0.10, min=0, help="--drift: the same for a quantized "
                                                   "stage."),
    max_persona_drop: float = typer.Option(0.2, min=0, max=1, help="--drift: largest fall of the "
                                           "style-marker rate or identity consistency."),
):
    """Persona metrics for base vs tuned (perplexity, style, identity, general sanity, optional judge),
    with report.json, report.md and PNG charts. With --drift: the drift gate over deployment stages."""
    from kit.artifacts import choose_persona
    from kit.eval.judge import JudgeConfig
    from kit.eval.run import evaluate_models
    from kit.eval.score import EvalSettings
    from kit.paths import character_dir

    if out.exists() and not out.is_dir():
        raise KitError(f"--out {out} is a file", "pass --out a folder (new, or an earlier eval's)")
    if drift or stages:
        from kit.eval.drift import Thresholds

        if not drift:
            raise KitError(f"unexpected argument {stages[0]!r}", "add --drift to compare deployment stages")
        if tuned or checkpoints or judge_url:
            raise KitError("--drift compares deployment stages; --tuned, --checkpoints and --judge-url belong "
                           "to the persona eval", "run the two as separate commands")
        limits = Thresholds(min_agreement, min_agreement_quantized, max_ppl_change, max_ppl_change_quantized,
                            max_persona_drop)
        _drift_gate(stages or [], base, character, eval_file, out, api_key_env, limits,
                    max_new_tokens, gen_limit, ppl_limit)
        return
    if base is None:
        raise KitError("--base is required", "pass the base model folder or its served URL")
    if bool(judge_url) != bool(judge_model):
        raise KitError("--judge-url and --judge-model go together", "pass both, or neither to skip the judge")
    character = choose_persona(character, [tuned, base, *(checkpoints or [])], Console(stderr=True)).character
    eval_file = eval_file or character_dir(character) / "built" / "eval.jsonl"
    report = evaluate_models(
        base, tuned, character, eval_file, out,
        settings=EvalSettings(max_new_tokens, gen_limit, ppl_limit),
        judge=JudgeConfig(judge_url, judge_model, judge_key_env) if judge_url else None,
        checkpoints=checkpoints or [], api_key_env=api_key_env)
    _summary(report)


def _drift_gate(specs: list[str], base: str | None, character: str | None, eval_file: Path | None, out: Path,
                api_key_env: str | None, limits, max_new_tokens: int, gen_limit: int, ppl_limit: int | None):
    import json

    from rich.table import Table

    from kit.artifacts import choose_persona
    from kit.eval.drift import DriftSettings, failures, parse_stages, run_drift
    from kit.paths import character_dir

    stages = parse_stages(specs)
    persona = choose_persona(character, [base, *(s.source for s in stages)], Console(stderr=True))
    eval_file = eval_file or character_dir(persona.character) / "built" / "eval.jsonl"
    settings = DriftSettings(max_new_tokens, gen_limit, ppl_limit)
    report_path = run_drift(stages, base, persona, eval_file, out, settings, limits, api_key_env)
    section = json.loads(report_path.read_text(encoding="utf-8"))["drift"]

    table = Table(title=f"{persona.name}: drift gate (reference {section['reference']})")
    for col in ("stage", "against", "agreement", "first divergence", "ppl change", "style Δ", "identity Δ",
                "gate"):
        table.add_column(col)
    for c in section["comparisons"]:
        drop = {k["metric"]: k["value"] for k in c["checks"]}
        table.add_row(c["stage"], c["against"], _num(c["agreement"], ".3f"),
                      _num(c["mean_first_divergence"], ".1f"), _num(c["perplexity_change"], "+.2%"),
                      _num(0.0 - drop["style_marker_rate_drop"], "+.3f"),
                      _num(0.0 - drop["identity_consistency_drop"], "+.3f"), "pass" if c["passed"] else "FAIL")
    console = Console()
    console.print(table)
    for c in section["comparisons"]:
        for k in c["checks"]:
            if k["passed"] is None:
                console.print(f"note: {c['stage']}: {k['metric']} {k['rule']}", markup=False)
    console.print(f"report: {report_path}  ({report_path.with_name('report.md')}, drift.png)")
    if not section["passed"]:
        for line in failures(section):
            console.print(f"drifted: {line}", markup=False)
        raise typer.Exit(1)


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _summary(report_path: Path) -> None:
    import json

    from rich.table import Table

    report = json.loads(report_path.read_text(encoding="utf-8"))
    table = Table(title=f"{report['persona_name']}: base vs tuned")
    for col in ("metric", "base", "tuned", "better"):
        table.add_column(col)
    for e in report["metrics"].values():
        table.add_row(e["title"], *("n/a" if e[s] is None else f"{e[s]:.3f}" for s in ("base", "tuned")),
                      e["better"])
    console = Console()
    console.print(table)
    for e in report["metrics"].values():
        for side in ("base", "tuned"):
            if e[side] is not None and e["details"][side].get("reason"):
                console.print(f"note: {e['title']} ({side}): {e['details'][side]['reason']}", markup=False)
    if "checkpoints" in report:
        console.print(f"suggested checkpoint: {report['checkpoints']['suggested']} ({report['checkpoints']['why']})")
    console.print(f"report: {report_path}  ({report_path.with_name('report.md')})")
