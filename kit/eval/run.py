"""Persona metrics for base vs tuned."""

from pathlib import Path

from kit.errors import NotBuiltYet


def evaluate_models(base: Path, tuned: Path, character: str, eval_file: Path, out_dir: Path) -> Path:
    """Score base and tuned; write out_dir/report.json (+ charts); return the report path."""
    raise NotBuiltYet("kit eval", 7)
