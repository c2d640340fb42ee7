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
):
    """Persona metrics for base vs tuned (perplexity, style, identity, general sanity, optional judge),
    with report.json, report.md and PNG charts."""
    from kit.artifacts import choose_persona
    from kit.eval.judge import JudgeConfig
    from kit.eval.run import evaluate_models
    from kit.eval.score import EvalSettings
    from kit.paths import character_dir

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
