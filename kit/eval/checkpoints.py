"""Find the checkpoints of one run: merged model folders, PEFT adapter folders, a folder holding them,
or an XTuner work dir (iter_N.pth, converted to adapters by kit.convert when scored)."""

import re
from dataclasses import dataclass
from pathlib import Path

from kit.errors import KitError


@dataclass(frozen=True)
class Checkpoint:
    name: str
    step: int | None
    path: Path
    config: Path | None = None  # the XTuner config of a .pth checkpoint, which must be converted first


def _is_model(path: Path) -> bool:
    return (path / "adapter_config.json").is_file() or (path / "config.json").is_file()


def _step(name: str) -> int | None:
    # iter_500.pth, checkpoint-500, step_500 ...: the last number in the name.
    numbers = re.findall(r"\d+", name)
    return int(numbers[-1]) if numbers else None


def _in_folder(path: Path) -> list[Checkpoint]:
    from kit.convert.locate import find_config
    from kit.train.run import checkpoints

    pths = checkpoints(path)
    if pths:
        config = find_config(path)
        return [Checkpoint(p.stem, _step(p.stem), p, config) for p in pths]
    inside = [p for p in path.iterdir() if p.is_dir() and _is_model(p)]
    if not inside:
        raise KitError(f"{path}: no checkpoints in it", "pass an XTuner work dir (iter_N.pth), merged model "
                       "folders (config.json) or adapter folders (adapter_config.json)")
    return [Checkpoint(p.name, _step(p.name), p) for p in inside]


def find_checkpoints(paths: list[Path]) -> list[Checkpoint]:
    found: list[Checkpoint] = []
    for path in map(Path, paths):
        if not path.exists():
            raise KitError(f"checkpoint path not found: {path}", "pass model/adapter folders or a run folder")
        found += [Checkpoint(path.name, _step(path.name), path)] if _is_model(path) else _in_folder(path)
    return sorted(found, key=lambda c: (c.step is None, c.step or 0, c.name))


def as_model_folder(checkpoint: Checkpoint, base: Path, scratch: Path) -> Path:
    """A folder the eval can load: the checkpoint itself, or its .pth exported as a PEFT adapter."""
    if checkpoint.config is None:
        return checkpoint.path
    from kit.convert.adapter import export_adapter

    out = scratch / checkpoint.name
    export_adapter(checkpoint.config, checkpoint.path, Path(base), out)
    return out
