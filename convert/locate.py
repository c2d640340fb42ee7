"""Which run, which checkpoint, which config: turn `kit merge [RUN] [--checkpoint C]` into files.

An XTuner work dir holds `iter_N.pth` (or `epoch_N.pth`) checkpoints, a `last_checkpoint` file naming
the newest one, and the config XTuner dumped when training started (`<recipe>.py`).
"""

from pathlib import Path

from kit.errors import KitError
from kit.train.run import CHECKPOINT, checkpoints
from kit.workspace import RUN_ROOTS


def find_run(run: str | Path | None, cwd: Path | None = None) -> Path:
    """The work dir named by RUN (a path or a name under work_dirs/ or runs/), else the newest one."""
    cwd = Path(cwd or Path.cwd())
    if run is not None:
        candidates = [Path(run), *(cwd / root / str(run) for root in RUN_ROOTS)]
        for path in candidates:
            if path.is_file() and CHECKPOINT.match(path.name):
                return path.parent
            if path.is_dir():
                return path
        raise KitError(f"no run {run!r}: not a folder, nor one under {' or '.join(RUN_ROOTS)}/",
                       "pass the XTuner work dir, e.g. `kit merge work_dirs/bajie`")
    runs = [d for root in RUN_ROOTS if (cwd / root).is_dir()
            for d in (cwd / root).iterdir() if d.is_dir() and checkpoints(d)]
    if not runs:
        raise KitError(f"no training run with checkpoints under {cwd}/{{{','.join(RUN_ROOTS)}}}/",
                       "train first (`kit train recipes/bajie.py`) or pass the work dir: kit merge DIR")
    return max(runs, key=lambda d: checkpoints(d)[-1].stat().st_mtime)


def find_checkpoint(work_dir: Path, chosen: str | Path | None = None) -> Path:
    """The chosen checkpoint (a name in work_dir or a path), else the newest one of the run."""
    work_dir = Path(work_dir)
    available = checkpoints(work_dir)
    names = ", ".join(p.name for p in available) or "none"
    if chosen is not None:
        for path in (Path(chosen), work_dir / str(chosen)):
            if path.exists():
                return path
        raise KitError(f"checkpoint {chosen} not found in {work_dir} (available: {names})",
                       "pick one of the available checkpoints with --checkpoint")
    # last_checkpoint holds an absolute path from training time: trust it only if it still exists.
    pointer = work_dir / "last_checkpoint"
    if pointer.is_file():
        named = Path(pointer.read_text(encoding="utf-8").strip())
        for path in (named, work_dir / named.name):  # a DeepSpeed checkpoint is a folder
            if path.exists() and path.parent.resolve() == work_dir.resolve():
                return path
    if not available:
        raise KitError(f"no checkpoint (iter_N.pth) in {work_dir}",
                       "training saves one every `save_steps` iterations: let it reach one, "
                       "or pass the right work dir")
    return available[-1]


# DeepSpeed writes its own script beside a ZeRO checkpoint, after XTuner's config (seen on the H200).
NOT_CONFIGS = {"zero_to_fp32.py"}


def find_config(work_dir: Path) -> Path:
    """The config XTuner dumped into the work dir when training started."""
    configs = sorted((p for p in Path(work_dir).glob("*.py") if p.name not in NOT_CONFIGS),
                     key=lambda p: p.stat().st_mtime)
    if not configs:
        raise KitError(f"no XTuner config (*.py) in {work_dir}",
                       "XTuner writes the recipe there when training starts; copy your recipe "
                       "into the work dir if it was removed")
    return configs[-1]
