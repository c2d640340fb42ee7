"""Helpers shared by the tests: the repo root and running `kit` as a user would."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_kit(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """Run the installed `kit` command as a user would; return the CompletedProcess."""
    kit = Path(sys.executable).parent / "kit"
    return subprocess.run([str(kit), *args], cwd=cwd or ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
