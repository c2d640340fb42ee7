"""A plain (non-editable) install holds every module, and Python started in the checkout's root still
finds every stage: `kit.train` lives in train/, which only an install (or an editable finder) maps."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from kit_testing import ROOT

STAGES = {"kit": "kit", "kit.train": "train", "kit.convert": "convert", "kit.serve": "serve"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """`pip install --no-deps .` into a folder of its own (uv's pip, as `make env` uses uv)."""
    target = tmp_path_factory.mktemp("installed")
    uv = ROOT / ".tools" / "bin" / "uv"
    result = subprocess.run([str(uv), "pip", "install", "--no-deps", "--python", sys.executable,
                             "--target", str(target), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return target


def tracked(folder: str) -> list[str]:
    listed = subprocess.run(["git", "ls-files", folder], cwd=ROOT, capture_output=True, text=True).stdout
    return [line for line in listed.splitlines() if not line.endswith(".md")]


def test_a_plain_install_holds_every_module_and_data_file(installed):
    for package, folder in STAGES.items():
        for name in tracked(folder):
            inside = Path(package.replace(".", "/")) / Path(name).relative_to(folder)
            assert (installed / inside).is_file(), f"{name} is not installed as {inside}"


def test_python_m_from_the_checkout_root_trains_against_a_plain_install(installed, tiny_model, tmp_path):
    """The GPU machine's failure: `No module named 'kit.train'` when the checkout's kit/ shadows the
    installed one. -S leaves out site's .pth files (the editable finder); deps come from site-packages."""
    data = tmp_path / "data"
    data.mkdir()
    row = '{"messages": [{"role": "user", "content": "你是谁？"}, {"role": "assistant", "content": "俺老猪。"}]}\n'
    (data / "train.jsonl").write_text(row * 4, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": f"{installed}{os.pathsep}{sysconfig.get_paths()['purelib']}",
           "KIT_VARIANT": "cpu", "KIT_BASE_MODEL": str(tiny_model), "KIT_DATA_DIR": str(data),
           "MKL_SERVICE_FORCE_INTEL": "1"}
    result = subprocess.run([sys.executable, "-S", "-m", "xtuner.tools.train", "recipes/bajie.py",
                             "--work-dir", str(tmp_path / "work"), "--cfg-options", "train_cfg.max_epochs=1"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "No module named 'kit" not in result.stderr, result.stderr[-3000:]
    assert list((tmp_path / "work").glob("iter_*.pth")), result.stderr[-3000:]


def test_a_plain_install_ships_the_startup_filter(installed):
    """kit-quiet.pth (setup.py) quiets the `xtuner` commands a participant types; tests/test_quiet.py
    runs one against the editable install `make env` makes."""
    assert (installed / "kit-quiet.pth").read_text() == (ROOT / "kit-quiet.pth").read_text()
