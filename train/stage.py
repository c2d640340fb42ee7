"""The train stage, as `kit train`, `kit demo` and the labs run it: preflight, XTuner, report.

The preflight (recipe, base, data, memory plan) runs before every launch, so a bad dataset or a run
that cannot fit is refused in seconds with the fix, not after XTuner has loaded the model.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from kit.errors import KitError
from kit.train import preflight
from kit.train.memory_plan import parse_memory_mib
from kit.train.run import RunResult, checkpoints, recipe_env, run_xtuner, write_deepspeed_config, xtuner_command
from kit.workspace import default_run

DEEPSPEED_STAGES = ("zero1", "zero2", "zero3")
FEW_SAMPLES = 100  # below this a run recites its few lines rather than taking on a voice (lab 7)


@dataclass(frozen=True)
class TrainSettings:
    recipe: str | Path  # a recipe file, or the name of one under recipes/ (`kit train bajie`)
    gpu_fraction: float | None = None  # plan for, and cap the run at, this share of the GPU
    gpu_memory: str | None = None  # or at this much memory, e.g. "8GiB" (a slice named by its size)
    resume: bool = False
    deepspeed: str | None = None
    gpus: int | None = None  # default NPROC_PER_NODE or 1
    work_dir: Path | None = None  # default work_dirs/RECIPE_NAME
    base: Path | None = None
    data_dir: Path | None = None
    cpu: bool = False  # the recipe's CPU variant (LoRA in fp32 for the tiny model)
    plan_only: bool = False


def resolve_recipe(recipe: str | Path) -> Path:
    from kit.paths import recipes_dir

    path = Path(recipe)
    if not path.exists() and not path.suffix and (recipes_dir() / f"{recipe}.py").is_file():
        path = recipes_dir() / f"{recipe}.py"  # `kit train bajie` means recipes/bajie.py
    return path.resolve()


def _gpus() -> tuple[int, float | None]:
    """(GPUs visible, MiB of the first) — (0, None) on a CPU-only host."""
    import torch

    if not torch.cuda.is_available():
        return 0, None
    return torch.cuda.device_count(), torch.cuda.get_device_properties(0).total_memory / 2**20


def run_train(s: TrainSettings, console: Console) -> RunResult | None:
    """Preflight, then train and write the report; None when `plan_only` stops after the plan."""
    from kit.train.report import write_report

    if s.gpu_fraction is not None and not 0 < s.gpu_fraction <= 1:
        raise KitError(f"--gpu-fraction {s.gpu_fraction}: must be in (0, 1]", "e.g. --gpu-fraction 0.1")
    if s.gpu_fraction is not None and s.gpu_memory is not None:
        raise KitError("--gpu-fraction and --gpu-memory both cap the run", "give one of them")
    gpu_memory_mib = None
    if s.gpu_memory is not None:
        try:
            gpu_memory_mib = parse_memory_mib(s.gpu_memory)
        except ValueError as e:
            raise KitError(f"--gpu-memory {e}", "e.g. --gpu-memory 8GiB for an 8 GiB slice") from None
    if s.deepspeed is not None and s.deepspeed not in DEEPSPEED_STAGES:
        raise KitError(f"--deepspeed {s.deepspeed}: unknown stage", "use zero1, zero2 or zero3")
    path = resolve_recipe(s.recipe)
    env = recipe_env(s.base, s.data_dir, cpu=s.cpu, gpu_fraction=s.gpu_fraction, gpu_memory_mib=gpu_memory_mib)
    cfg = preflight.load_recipe(path, env)
    facts = preflight.recipe_facts(cfg)
    preflight.check_base(facts)
    n_gpus, gpu_mib = _gpus()
    if facts.setup.method == "qlora" and n_gpus == 0:
        raise KitError(f"{path}: QLoRA (4-bit bitsandbytes) needs a CUDA GPU and this host has none",
                       "on CPU, train the recipe's CPU variant on a small model: "
                       f"kit train {s.recipe} --cpu --base PATH (kit demo builds one)")
    console.print(f"[bold]recipe[/] {path}  [bold]model[/] {facts.base_model}  [bold]method[/] "
                  f"{facts.setup.method}, max_length {facts.setup.seq_len}")
    samples = preflight.check_data(facts)
    console.print(f"[green]data ok[/]: {samples} samples in {', '.join(map(str, facts.data_files))}")
    if samples < FEW_SAMPLES:
        console.print(f"[yellow]warning:[/] {samples} samples is little to learn a character's voice from "
                      "(the course's 八戒 has 362): add the character's lines, or persona Q&A with "
                      "`kit data generate` (lab 7)")
    console.print("[bold]memory plan[/] (per GPU)" + ("" if n_gpus else ", for reference: no GPU here"))
    if gpu_memory_mib and gpu_mib and gpu_memory_mib > gpu_mib:
        console.print(f"[yellow]warning:[/] --gpu-memory {s.gpu_memory} is more than this GPU's "
                      f"{gpu_mib:,.0f} MiB: the run is capped at the card")
    console.print(preflight.check_fit(preflight.memory_plan(facts), s.gpu_fraction, gpu_mib, gpu_memory_mib))
    if s.plan_only:
        return None

    work = (s.work_dir or default_run(path)).resolve()
    resume_from = None
    if s.resume:
        found = checkpoints(work)
        if not found:
            raise KitError(f"--resume: no iter_N.pth checkpoint in {work}",
                           "train once without --resume, or pass the run's --work-dir")
        resume_from = found[-1]
        console.print(f"resuming from {resume_from}", soft_wrap=True)
    nproc = s.gpus or int(os.environ.get("NPROC_PER_NODE", 1))
    ds_config = write_deepspeed_config(s.deepspeed, work) if s.deepspeed else None
    command = xtuner_command(path, work, nproc=nproc, deepspeed=ds_config, resume_from=resume_from)
    result = run_xtuner(command, work, env, console)
    result.report = write_report(work)
    return result
