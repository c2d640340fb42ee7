import os
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("MKL_SERVICE_FORCE_INTEL", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The cached tiny InternLM2, its vocabulary covering bajie (built once per machine; read-only)."""
    from kit.tiny import build_tiny_model

    return build_tiny_model(character="bajie")


@pytest.fixture(scope="session")
def make_demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`make demo` exactly as README says, run once into a scratch workdir and shared: its base and
    merged models and its eval report are what the README, lab, eval and compare-page tests look at."""
    from kit_testing import ROOT

    # Developer loop only: KIT_TEST_DEMO_WORKDIR keeps one finished run (and its output) across pytest
    # sessions, so several people testing serve or labs do not each retrain. CI never sets it.
    kept = os.environ.get("KIT_TEST_DEMO_WORKDIR")
    work = Path(kept) if kept else tmp_path_factory.mktemp("make-demo") / "demo"
    log = work.parent / f"{work.name}.make-demo.log"
    if kept and log.exists():
        return work, subprocess.CompletedProcess(["make", "demo"], 0, log.read_text(), "")
    result = subprocess.run(["make", "demo", f"WORKDIR={work}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    if kept:
        log.write_text(result.stdout)
    return work, result
