"""Where LMDeploy lives: its own environment, because LMDeploy ≥0.16 needs transformers ≥4.56 while
XTuner 0.2.0 pins 4.48.0 (docs/environment.md). kit talks to it only through subprocesses."""

import os
import shutil
from pathlib import Path

from kit.errors import KitError
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


def require_lmdeploy_python() -> Path:
    """lmdeploy_python(), or the error that says how to set LMDeploy's environment up."""
    python = lmdeploy_python()
    if python is None:
        raise KitError("LMDeploy is not installed (it lives in its own environment)",
                       "make lmdeploy-env, or point $KIT_LMDEPLOY_PYTHON at a Python that has lmdeploy")
    return python
