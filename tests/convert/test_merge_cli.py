"""`kit merge` as a user runs it: a run found by name under work_dirs/, outputs beside it."""

import json
import shutil

import pytest
from kit_testing import run_kit

from kit.convert.locate import find_run
from kit.errors import KitError


def test_merge_by_name_with_chosen_checkpoint_and_dtype(tiny_run, tmp_path):
    shutil.copytree(tiny_run["work"], tmp_path / "work_dirs" / "bajie")
    proc = run_kit("merge", "bajie", "--checkpoint", "iter_2.pth", "--dtype", "bf16", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run = tmp_path / "work_dirs" / "bajie"
    record = json.loads((run / "merged" / "kit_merge.json").read_text(encoding="utf-8"))
    assert record["checkpoint"] == "iter_2.pth" and record["dtype"] == "bfloat16"
    assert json.loads((run / "merged" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert "chat template = XTuner internlm2_chat" in proc.stdout


def test_merge_without_runs_says_what_to_do(tmp_path):
    proc = run_kit("merge", cwd=tmp_path)
    assert proc.returncode == 2
    assert "no training run with checkpoints" in proc.stderr and "kit train" in proc.stderr
    with pytest.raises(KitError, match="no run 'nope'"):
        find_run("nope", cwd=tmp_path)


def test_merge_into_the_run_folder_is_refused_and_keeps_it(tiny_run, tmp_path):
    """Before: `kit merge RUN -o RUN` replaced the run folder (its checkpoints too) and exited 0."""
    run = shutil.copytree(tiny_run["work"], tmp_path / "work_dirs" / "bajie")
    proc = run_kit("merge", "bajie", "-o", str(run), "--force", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"--out {run} is or holds {run}" in proc.stderr and "pass --out another folder" in proc.stderr
    assert (run / "iter_4.pth").is_file()
