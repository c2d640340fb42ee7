"""PRODUCT.md layout: stage code imports only under `kit`; datasets/ never shadows HF datasets."""

import subprocess
import sys

from kit_testing import ROOT


def _python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)


def test_stage_packages_live_under_kit(tmp_path):
    ok = _python("import kit.train, kit.convert, kit.serve, kit.data, kit.eval, kit.labs", tmp_path)
    assert ok.returncode == 0, ok.stderr
    for name in ("train", "convert", "serve"):
        assert _python(f"import {name}", tmp_path).returncode != 0, f"top-level {name} importable"


def test_hf_datasets_is_not_shadowed_from_the_repo_root():
    result = _python("import datasets; print(datasets.__file__)", ROOT)
    assert result.returncode == 0 and "site-packages" in result.stdout, result.stdout + result.stderr
    assert not (ROOT / "datasets" / "__init__.py").exists()
