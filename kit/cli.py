"""The `kit` command: one sub-command per pipeline stage (PRODUCT.md's contract).

Each stage owns its commands in its own module; this file only wires them together and turns a
KitError into a readable message and exit code 2.
"""

import logging
import os
import sys
from pathlib import Path

import typer
from rich.console import Console

from kit import chat
from kit.convert import cli as convert_cli
from kit.data import cli as data_cli
from kit.errors import KitError
from kit.eval import cli as eval_cli
from kit.labs import cli as lab_cli
from kit.serve import cli as serve_cli
from kit.train import cli as train_cli

app = typer.Typer(
    help="kit: build a role-play character model — data → XTuner QLoRA → merge → LMDeploy → compare.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)


@app.command()
def doctor(fresh: bool = typer.Option(False, "--fresh", help="Probe torch and torchvision again even if "
                                      "the environment has not changed since their cached answer.")):
    """Check Python, torch/CUDA, GPU memory, stack versions and known conflicts, with fixes."""
    from kit.doctor import render, run_checks

    raise typer.Exit(render(run_checks(fresh=fresh)))


@app.command()
def demo(workdir: Path = typer.Option(Path("demo"), help="Where the demo leaves base/, data/, work/, "
                                      "adapter/, merged/ and eval/.")):
    """The whole pipeline on the embedded tiny InternLM2, on CPU, in minutes."""
    from kit.demo import run_demo

    run_demo(workdir)


app.add_typer(data_cli.app, name="data")
app.command("train")(train_cli.train)
app.command("loss")(train_cli.loss)
app.add_typer(train_cli.recipe_app, name="recipe")
app.command("merge")(convert_cli.merge)
app.command("quantize")(serve_cli.quantize)
app.command("serve")(serve_cli.serve)
app.command("chat")(chat.chat)
app.command("eval")(eval_cli.evaluate)
app.add_typer(lab_cli.app, name="lab")


def main() -> None:
    # XTuner/MKL abort with "mkl-service + Intel(R) MKL" without this; children inherit it.
    os.environ.setdefault("MKL_SERVICE_FORCE_INTEL", "1")
    # bitsandbytes warns on CPU that an optional hub kernel is missing; kit never uses it there.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    # soft_wrap: an error names paths and commands people copy; never break them at the terminal edge.
    console = Console(stderr=True, soft_wrap=True)
    try:
        app()
    except KitError as e:
        console.print(f"[bold red]error:[/] {e.message}")
        if e.fix:
            console.print(f"[cyan]fix:[/] {e.fix}")
        sys.exit(2)
