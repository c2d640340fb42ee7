"""Persona metrics for base vs tuned (and the checkpoints of a run): score, chart, report."""

import gc
import tempfile
from importlib.metadata import version
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kit.artifacts import persona_record
from kit.errors import KitError
from kit.eval import identity
from kit.eval.backends import Endpoint, is_url, open_model
from kit.eval.charts import write_charts
from kit.eval.checkpoints import as_model_folder, find_checkpoints
from kit.eval.judge import Judge, JudgeConfig, rubric
from kit.eval.report import build_report, summarize_checkpoints, write_report
from kit.eval.resume import ScoreStore, content_digest
from kit.eval.samples import GENERAL_SET, load_general_set, load_samples
from kit.eval.score import EvalSettings, score_model, work_units
from kit.eval.style import persona_markers, style_marker_rate
from kit.persona import persona_for


def evaluate_models(base: Path | str, tuned: Path | str | None, character: str, eval_file: Path,
                    out_dir: Path, *, settings: EvalSettings | None = None, judge: JudgeConfig | None = None,
                    checkpoints: list[Path] = (), api_key_env: str | None = None) -> Path:
    """Score base and tuned (paths or URLs); write out_dir/report.json, report.md and charts; return
    the report path. With checkpoints and no tuned model, "tuned" is the suggested checkpoint.
    `api_key_env` names the variable holding the key of the served base/tuned (None: no key)."""
    settings = settings or EvalSettings()
    persona = persona_for(character)
    samples, general = load_samples(Path(eval_file)), load_general_set()
    found = find_checkpoints(list(checkpoints)) if checkpoints else []
    if found and is_url(base):
        raise KitError("checkpoints are scored on a local base model, not a served one",
                       "pass --base PATH (the model the run trained on)")
    if tuned is None and not found:
        raise KitError("nothing to compare with the base model", "pass --tuned PATH|URL or --checkpoints RUN_DIR")
    for url in {str(s) for s in (base, tuned) if s is not None and is_url(s)}:
        Endpoint(url, api_key_env)  # a dead or locked server stops the run now, not after hours of work
    grader = Judge(judge, persona) if judge else None
    units = work_units(persona, samples, general, settings, grader is not None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = ScoreStore(out_dir / "scores", {
        "kit": version("kit"), "persona": content_digest(persona.path), "eval": content_digest(eval_file),
        "general": content_digest(GENERAL_SET), "settings": vars(settings),
        "judge": [judge.url, judge.model] if judge else None})

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True)) as progress:
        def score(label: str, sources: list, load) -> dict:
            """`sources` are what the score depends on; `load()` gives what open_model takes."""
            key = store.key(label, sources)
            if (kept := store.get(label, key)) is not None:
                progress.console.print(f"{label}: unchanged, score kept from {store.path(label)}")
                return kept
            task = progress.add_task(f"{label:<12}", total=units)
            model = open_model(load(), base, api_key_env)
            try:
                result = score_model(model, persona, samples, general, settings, grader,
                                     lambda: progress.advance(task))
            finally:
                del model
                _free_memory()
            store.put(label, key, result)
            return result

        base_score = score("base", [base], lambda: base)
        with tempfile.TemporaryDirectory(prefix="kit-eval-") as scratch:
            runs = [{"name": c.name, "step": c.step,
                     "score": score(c.name, [c.path, base], lambda c=c: as_model_folder(c, base, Path(scratch)))}
                    for c in found]
        tuned_score = score("tuned", [tuned, base], lambda: tuned) if tuned is not None else None

    meta = {
        "kit_version": version("kit"), **persona_record(persona), "persona_name": persona.name,
        "persona_file": str(persona.path), "eval_file": str(eval_file), "general_set": str(GENERAL_SET),
        "settings": {"decoding": "greedy", "seed": 0, **vars(settings)},
        "rubrics": {"style_markers": persona_markers(persona),
                    "identity": {"names": [persona.name, *persona.aliases],
                                 "generic_identities": list(identity.GENERIC_IDENTITIES),
                                 "negations": list(identity.NEGATIONS)},
                    "judge": rubric(persona) if judge else None},
    }
    if judge:
        meta["judge"] = {"url": judge.url, "model": judge.model}
    summary = summarize_checkpoints(runs) if runs else None
    if tuned_score is None:
        tuned_score = next((r["score"] for r in runs if r["name"] == summary["suggested"]), runs[-1]["score"])
        tuned_score["model"] += f" (suggested checkpoint {summary['suggested']})"
    report = build_report(meta, base_score, tuned_score, summary)
    # The character's real held-out lines: the style rate a perfect imitation would reach.
    report["metrics"]["style_marker_rate"]["reference"] = style_marker_rate([s.reply for s in samples],
                                                                             persona).rate
    return write_report(report, out_dir, write_charts(report, out_dir))


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
