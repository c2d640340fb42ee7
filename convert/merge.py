"""Checkpoint -> HF adapter -> merged model, verified."""

from pathlib import Path

from kit.errors import NotBuiltYet


def merge_run(work_dir: Path, base: Path, adapter_out: Path, merged_out: Path) -> Path:
    """Convert the newest checkpoint of work_dir and merge it into base; return merged_out."""
    raise NotBuiltYet("kit merge", 5)
