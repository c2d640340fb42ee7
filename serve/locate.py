"""Which models `kit serve` and `kit quantize` use when none is named.

The tuned model is the newest folder named `merged` (with a config.json) at most three levels below the
current directory, e.g. demo/merged from `kit demo` or runs/bajie/merged from `kit merge`. Its base is
the path recorded in merged/kit_merge.json ("base"), else the sibling folder `base` (kit.workspace).
"""

import json
from pathlib import Path

from kit.errors import KitError
from kit.workspace import base_of, newest_merged


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


def adapter_of(tuned: Path) -> Path | None:
    """The PEFT adapter a merged model was made from (kit_merge.json's "adapter", written by `kit merge`),
    if that folder is still there."""
    record = Path(tuned) / "kit_merge.json"
    if not record.is_file():
        return None
    adapter = json.loads(record.read_text(encoding="utf-8")).get("adapter")
    return Path(adapter) if adapter and (Path(adapter) / "adapter_config.json").is_file() else None
