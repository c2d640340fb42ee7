"""The folder layout the stages share, and finding artifacts in it.

`kit demo`, `kit lab init` and the labs work in one folder DIR: DIR/base (the base model), data (train
and eval JSONL), work (XTuner's work dir), adapter, merged, merged-w4a16 (`kit quantize`) and eval (the
report). `kit merge RUN` leaves adapter/ and merged/ inside the run's folder the same way, so a later
stage handed a model folder finds its neighbours through `Workspace.around(model)`.
"""

import json
from dataclasses import dataclass
from pathlib import Path

# Where `kit train` and `xtuner train` put runs by default (XTuner: work_dirs/RECIPE_NAME), and kit's
# runs/ folder; both relative to the current directory.
RUN_ROOTS = ("work_dirs", "runs")
MERGED, QUANTIZED_SUFFIX = "merged", "-w4a16"


def _inside(*parts: str) -> property:
    return property(lambda ws: ws.root.joinpath(*parts))


@dataclass(frozen=True)
class Workspace:
    root: Path

    base = _inside("base")
    data = _inside("data")
    train_file = _inside("data", "train.jsonl")
    eval_file = _inside("data", "eval.jsonl")
    work = _inside("work")  # XTuner's work dir
    adapter = _inside("adapter")
    merged = _inside(MERGED)
    quantized = _inside(MERGED + QUANTIZED_SUFFIX)
    eval = _inside("eval")
    report = _inside("eval", "report.json")

    @classmethod
    def around(cls, model: Path) -> "Workspace":
        """The workspace a model folder (DIR/merged, DIR/base, …) sits in."""
        return cls(Path(model).parent)


def quantized_beside(model: Path) -> Path:
    """Where `kit quantize MODEL` writes by default: MODEL-w4a16 next to MODEL."""
    return model.with_name(model.name + QUANTIZED_SUFFIX)


def default_run(recipe: Path) -> Path:
    """XTuner's default work dir for a recipe, where `kit merge` looks first."""
    return Path(RUN_ROOTS[0]) / recipe.stem


def newest_merged(root: Path) -> Path | None:
    """The newest `merged` model folder (with a config.json) at most three levels below root."""
    found = [p.parent for depth in range(4)
             for p in root.glob("/".join(["*"] * depth + [MERGED, "config.json"]))]
    return max(found, key=lambda p: (p / "config.json").stat().st_mtime, default=None)


def base_of(merged: Path) -> Path | None:
    """The base a merged model was made from: kit_merge.json's "base", else the workspace's base."""
    record = merged / "kit_merge.json"
    if record.is_file():
        base = json.loads(record.read_text(encoding="utf-8")).get("base")
        if base and (Path(base) / "config.json").is_file():
            return Path(base)
    sibling = Workspace.around(merged).base
    return sibling if (sibling / "config.json").is_file() else None
