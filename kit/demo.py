"""`kit demo`: the whole pipeline on the embedded tiny InternLM2, on CPU.

data -> train -> merge -> eval, leaving DIR/base, DIR/data, DIR/work, DIR/adapter, DIR/merged and
DIR/eval/report.json. A stage not built yet ends the demo there, saying so.
"""

import time
from pathlib import Path

from rich.console import Console

from kit.artifacts import COURSE_CHARACTER as CHARACTER
from kit.errors import NotBuiltYet


def run_demo(workdir: Path) -> None:
    from kit.convert.merge import merge_run
    from kit.data.build import build_character
    from kit.eval.run import evaluate_models
    from kit.tiny import build_tiny_model
    from kit.train.run import train_demo

    console = Console()
    workdir = Path(workdir).resolve()
    base, data, work = workdir / "base", workdir / "data", workdir / "work"
    adapter, merged, eval_dir = workdir / "adapter", workdir / "merged", workdir / "eval"
    steps = [
        ("base: tiny InternLM2, pretrained on CPU as a plain chat assistant (cached after the first run)",
         lambda: build_tiny_model(base, character=CHARACTER)),
        ("data: datasets/bajie -> train/eval JSONL", lambda: build_character(CHARACTER, data)),
        ("train: recipes/bajie.py, CPU LoRA variant, via XTuner", lambda: train_demo(base, data, work)),
        # force: DIR is the demo's own, and a demo folder from an older kit has no adapter record yet.
        ("merge: checkpoint -> adapter -> merged, verified",
         lambda: merge_run(work, base, adapter, merged, force=True)),
        ("eval: persona metrics, base vs tuned",
         lambda: evaluate_models(base, merged, CHARACTER, data / "eval.jsonl", eval_dir)),
    ]
    console.rule(f"kit demo → {workdir}")
    for title, step in steps:
        start = time.monotonic()
        console.print(f"[bold]▶ {title}[/]")
        try:
            result = step()
        except NotBuiltYet as e:
            console.print(f"[yellow]  stopped: {e.message}[/]")
            return
        console.print(f"  [green]done[/] in {time.monotonic() - start:.1f}s → {result}")
    console.rule("next")
    # soft_wrap: the command is meant to be copied, so it is never broken at the terminal edge.
    console.print(f"compare base and tuned in the browser:\n  kit serve --engine transformers "
                  f"--base {base} --tuned {merged}\nreport: {eval_dir / 'report.json'}", soft_wrap=True)
