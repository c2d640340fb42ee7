"""`kit demo`: the whole pipeline on the embedded tiny InternLM2, on CPU.

data -> train -> merge -> eval, leaving DIR/base, DIR/data, DIR/work, DIR/adapter, DIR/merged and
DIR/eval/report.json (kit.workspace). Each step is the stage's own entry, as the CLI runs it.
"""

import shutil
import time
from pathlib import Path

from rich.console import Console

from kit.artifacts import COURSE_CHARACTER as CHARACTER
from kit.workspace import Workspace


def _train(ws: Workspace) -> Path:
    """recipes/bajie.py's CPU variant, through `kit train`'s preflight; the demo starts from scratch."""
    from kit.paths import recipes_dir
    from kit.train.stage import TrainSettings, run_train

    shutil.rmtree(ws.work, ignore_errors=True)
    settings = TrainSettings(recipes_dir() / f"{CHARACTER}.py", work_dir=ws.work, base=ws.base, data_dir=ws.data,
                             cpu=True)
    # quiet: the preflight's summary is `kit train`'s; the demo shows the progress bar and its own lines.
    return run_train(settings, Console(quiet=True)).work_dir


def run_demo(workdir: Path) -> None:
    from kit.convert.merge import merge_run
    from kit.data.build import build_character
    from kit.eval.run import evaluate_models
    from kit.tiny import build_tiny_model

    console = Console()
    ws = Workspace(Path(workdir).resolve())
    steps = [
        ("base: tiny InternLM2, pretrained on CPU as a plain chat assistant (cached after the first run)",
         lambda: build_tiny_model(ws.base, character=CHARACTER)),
        ("data: datasets/bajie -> train/eval JSONL", lambda: build_character(CHARACTER, ws.data)),
        ("train: recipes/bajie.py, CPU LoRA variant, via XTuner", lambda: _train(ws)),
        # force: DIR is the demo's own, and a demo folder from an older kit has no adapter record yet.
        ("merge: checkpoint -> adapter -> merged, verified",
         lambda: merge_run(ws.work, ws.base, ws.adapter, ws.merged, force=True)),
        ("eval: persona metrics, base vs tuned",
         lambda: evaluate_models(ws.base, ws.merged, CHARACTER, ws.eval_file, ws.eval)),
    ]
    console.rule(f"kit demo → {ws.root}")
    for title, step in steps:
        start = time.monotonic()
        console.print(f"[bold]▶ {title}[/]")
        result = step()
        console.print(f"  [green]done[/] in {time.monotonic() - start:.1f}s → {result}")
    console.rule("next")
    # soft_wrap: the command is meant to be copied, so it is never broken at the terminal edge.
    console.print(f"compare base and tuned in the browser:\n  kit serve --engine transformers "
                  f"--base {ws.base} --tuned {ws.merged}\nreport: {ws.report}", soft_wrap=True)
