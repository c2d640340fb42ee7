"""Which models `kit serve` and `kit quantize` use when none is named.

The tuned model is the newest folder named `merged` (with a config.json) at most three levels below the
current directory, e.g. demo/merged from `kit demo` or runs/bajie/merged from `kit merge`. Its base is
the path recorded in merged/kit_merge.json ("base"), else the sibling folder `base`.
"""

import json
from pathlib import Path

from kit.errors import KitError


def newest_merged(root: Path) -> Path | None:
    found = [p.parent for depth in range(4)
             for p in root.glob("/".join(["*"] * depth + ["merged", "config.json"]))]
    return max(found, key=lambda p: (p / "config.json").stat().st_mtime, default=None)


def base_of(merged: Path) -> Path | None:
    record = merged / "kit_merge.json"
    if record.is_file():
        base = json.loads(record.read_text(encoding="utf-8")).get("base")
        if base and (Path(base) / "config.json").is_file():
            return Path(base)
    sibling = merged.parent / "base"
    return sibling if (sibling / "config.json").is_file() else None


def resolve_models(base: Path | None, tuned: Path | None, root: Path | None = None) -> dict[str, Path]:
    """{"base": ..., "tuned": ...} (either may be absent if the user asked for one model only)."""
    root = Path.cwd() if root is None else root
    if tuned is None and base is None:
        tuned = newest_merged(root)
        if tuned is None:
            raise KitError(f"no merged model found under {root}",
                           "run `kit demo` (or `kit merge`), or pass --base PATH --tuned PATH")
        base = base_of(tuned)
    models = {name: Path(p) for name, p in (("base", base), ("tuned", tuned)) if p is not None}
    for name, path in models.items():
        if not (path / "config.json").is_file():
            raise KitError(f"{name} model {path}: not a Hugging Face model folder (no config.json)",
                           "point it at a folder written by `kit demo`, `kit merge` or `kit quantize`")
    return models
