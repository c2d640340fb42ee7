"""Find the checkpoints of one run: merged model folders, PEFT adapter folders, or a folder holding them."""

import re
from dataclasses import dataclass
from pathlib import Path

from kit.errors import KitError


@dataclass(frozen=True)
class Checkpoint:
    name: str
    step: int | None
    path: Path


def _is_model(path: Path) -> bool:
    return (path / "adapter_config.json").is_file() or (path / "config.json").is_file()


def _step(name: str) -> int | None:
    # iter_500, checkpoint-500, step_500, epoch_2 ...: the last number in the name.
    numbers = re.findall(r"\d+", name)
    return int(numbers[-1]) if numbers else None


def find_checkpoints(paths: list[Path]) -> list[Checkpoint]:
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise KitError(f"checkpoint path not found: {path}", "pass model/adapter folders or a run folder")
        if _is_model(path):
            found.append(path)
            continue
        inside = sorted(p for p in path.iterdir() if p.is_dir() and _is_model(p))
        pths = sorted(path.glob("*.pth"))
        if not inside and pths:
            raise KitError(f"{path} holds XTuner .pth checkpoints ({pths[0].name}, ...), which must be "
                           "converted first",
                           "convert each: `xtuner convert pth_to_hf RECIPE CKPT.pth OUT_DIR` (or `kit merge`) "
                           "and pass the adapter folders to --checkpoints")
        if not inside:
            raise KitError(f"{path}: no model or adapter folders in it",
                           "pass merged model folders (config.json) or adapter folders (adapter_config.json)")
        found += inside
    checkpoints = [Checkpoint(p.name, _step(p.name), p) for p in found]
    return sorted(checkpoints, key=lambda c: (c.step is None, c.step or 0, c.name))
