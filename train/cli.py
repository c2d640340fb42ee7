"""`kit train` and `kit recipe`."""

import re
from pathlib import Path

import typer
from rich.console import Console

from kit.artifacts import COURSE_CHARACTER
from kit.errors import KitError

recipe_app = typer.Typer(help="Make XTuner recipes for your own character.", no_args_is_help=True)
TEMPLATE = COURSE_CHARACTER  # recipes/bajie.py is the template: a new recipe is it with the character renamed


def train(
    recipe: str = typer.Argument(..., help="An XTuner recipe, e.g. recipes/bajie.py (or just bajie)."),
    gpu_fraction: float = typer.Option(None, help="Plan for, and cap the run at, this share of the GPU "
                                       "(0.1 = the course's 10% A100 slice)."),
    gpu_memory: str = typer.Option(None, help="Plan for, and cap the run at, this much GPU memory, "
                                   "e.g. 8GiB (the same slice on any card; or --gpu-fraction)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the work dir's newest checkpoint."),
    deepspeed: str = typer.Option(None, help="DeepSpeed ZeRO stage: zero1, zero2 or zero3."),
    gpus: int = typer.Option(None, help="GPUs to train on through torchrun (default NPROC_PER_NODE or 1)."),
    work_dir: Path = typer.Option(None, help="XTuner's work dir (default work_dirs/RECIPE_NAME)."),
    base: Path = typer.Option(None, help="Base model folder (sets KIT_BASE_MODEL for the recipe)."),
    data_dir: Path = typer.Option(None, help="Folder with train.jsonl (sets KIT_DATA_DIR)."),
    cpu: bool = typer.Option(False, "--cpu", help="The recipe's CPU variant (KIT_VARIANT=cpu): LoRA in "
                             "fp32 for the embedded tiny model."),
    plan_only: bool = typer.Option(False, "--plan-only", help="Run the preflight, print the plan, stop."),
):
    """Preflight, launch XTuner, show progress, plot the loss, sample each checkpoint."""
    from kit.train.stage import TrainSettings, run_train

    console = Console(stderr=True)
    settings = TrainSettings(recipe, gpu_fraction=gpu_fraction, gpu_memory=gpu_memory, resume=resume, deepspeed=deepspeed, gpus=gpus,
                             work_dir=work_dir, base=base, data_dir=data_dir, cpu=cpu, plan_only=plan_only)
    result = run_train(settings, console)
    if result is None:
        return
    console.print(f"[green]done[/]: {len(result.checkpoints)} checkpoint(s) in {result.work_dir}, last loss "
                  f"{result.last_loss}")
    for peak in result.peaks:
        console.print(f"  GPU {peak['rank']}: peak {peak['max_allocated_mib']:,.0f} MiB allocated, "
                      f"{peak['max_reserved_mib']:,.0f} MiB reserved")
    for name, file in result.report.items():
        if file:
            console.print(f"  {name}: {file}", soft_wrap=True)
    console.print(f"next: kit merge {result.work_dir}", soft_wrap=True)


@recipe_app.command("new")
def recipe_new(
    character: str = typer.Argument(..., help="Folder under datasets/ with a persona.yaml, e.g. huanhuan."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing recipe."),
):
    """Write recipes/CHARACTER.py from the bajie recipe."""
    from kit import atomic
    from kit.paths import recipes_dir
    from kit.persona import persona_for

    if not re.fullmatch(r"[a-z][a-z0-9_]*", character):
        raise KitError(f"character id {character!r}: use lowercase letters, digits and _",
                       "it names datasets/CHARACTER/ and recipes/CHARACTER.py, e.g. huanhuan")
    persona = persona_for(character)  # the folder and its persona.yaml must exist and be valid
    out = recipes_dir() / f"{character}.py"
    if out.exists() and not force:
        raise KitError(f"{out} exists", "pass --force to overwrite it, or edit it directly")
    template = (recipes_dir() / f"{TEMPLATE}.py").read_text(encoding="utf-8")
    atomic.write_text(out, template.replace(TEMPLATE, character))
    import torch

    # The next step as this machine can run it: QLoRA needs a CUDA GPU, the CPU variant a small base.
    train = (f"kit train {out} --gpu-fraction 0.1" if torch.cuda.is_available()
             else f"kit train {out} --cpu --base PATH   (a small model: `kit lab init` or `kit demo` builds one)")
    Console().print(f"[green]wrote[/] {out} for {persona.name}\nnext:\n  kit data build {character}\n  {train}")


def loss(
    work_dirs: list[Path] = typer.Argument(..., help="Work dirs of `kit train` / `xtuner train` runs, "
                                           "e.g. lab/work lab/work-r16."),
    out: Path = typer.Option(Path("loss_compare.png"), "-o", "--out", help="The PNG to write."),
):
    """Plot the training loss of one or more runs on one chart, e.g. r=16 against r=32."""
    from kit.train.report import compare_loss

    Console(stderr=True).print(f"[green]wrote[/] {compare_loss(work_dirs, out)}", soft_wrap=True)
