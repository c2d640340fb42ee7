"""Where LMDeploy lives: its own environment, because LMDeploy ≥0.16 needs transformers ≥4.56 while
XTuner 0.2.0 pins 4.48.0 (docs/environment.md). kit talks to it only through subprocesses."""

import os
import shutil
from pathlib import Path

from kit.paths import PACKAGE_ROOT

DEFAULT_ENV = PACKAGE_ROOT / ".venv-lmdeploy"


def lmdeploy_python() -> Path | None:
    """The Python that has lmdeploy: $KIT_LMDEPLOY_PYTHON, else .venv-lmdeploy, else None."""
    explicit = os.environ.get("KIT_LMDEPLOY_PYTHON")
    if explicit:
        found = shutil.which(explicit) or explicit
        return Path(found) if Path(found).exists() else None
    candidate = DEFAULT_ENV / "bin" / "python"
    return candidate if candidate.exists() else None
