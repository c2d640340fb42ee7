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


def interruptible() -> None:
    """preexec_fn for a child the test stops with SIGINT (Ctrl-C): a suite started in the background by
    a shell without job control inherits SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
