"""`kit data build`: datasets/CHARACTER/ sources -> train/eval JSONL + dataset card."""

from pathlib import Path

from kit.errors import NotBuiltYet


def build_character(character: str, out_dir: Path | None = None) -> Path:
    """Build train.jsonl, eval.jsonl and the card into out_dir (default datasets/CHARACTER/built)."""
    raise NotBuiltYet("kit data build", 3)
