"""`kit lab check N` on an empty workdir: it fails, naming each missing artifact and the command that makes it."""

import io
import json

import pytest
from rich.console import Console

from kit.labs.checks import run_lab_check
from kit.labs.findings import render
from kit_testing import run_kit

# lab -> (what must be named as missing, the fix command that must be printed)
EXPECTED = {
    1: ("base/config.json does not exist", "kit lab init --workdir"),
    2: ("data/train.jsonl does not exist", "kit data build bajie -o"),
    3: ("work does not exist", "kit train recipes/bajie.py --cpu --base"),
    4: ("merged/config.json does not exist", "kit merge"),
    5: ("base/config.json does not exist", "kit merge"),
    6: ("eval/report.json does not exist", "kit eval --base"),
}


@pytest.mark.parametrize("n", sorted(EXPECTED))
def test_check_on_empty_workdir_names_what_is_missing_and_the_fix(n, tmp_path):
    # In-process (one import of torch for all labs); the CLI's exit code is tested below.
    out = io.StringIO()
    passed = render(Console(file=out, width=400), f"lab {n}", run_lab_check(n, tmp_path / "empty", "bajie"))
    text = out.getvalue()
    missing, fix = EXPECTED[n]
    assert not passed and "missing" in text and missing in text, text
    assert "fix:" in text and fix in text, text
    assert "lab passed" not in text


def test_cli_check_exits_1_with_the_fix(tmp_path):
    result = run_kit("lab", "check", "1", "--workdir", str(tmp_path / "empty"), env={"COLUMNS": "300"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "does not exist" in result.stdout and "fix: kit lab init --workdir" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_check_of_an_unknown_lab_is_an_error(tmp_path):
    result = run_kit("lab", "check", "42", "--workdir", str(tmp_path))
    assert result.returncode == 2 and "no lab 42" in result.stderr


def test_a_check_fails_on_another_characters_artifacts(tmp_path):
    """Lab 7's trap: a report or merged model made for one character must not pass another's check."""
    (tmp_path / "eval").mkdir()
    (tmp_path / "merged").mkdir()
    metrics = {"heldout_perplexity": {"base": 90.0, "tuned": 9.0}}
    (tmp_path / "eval" / "report.json").write_text(json.dumps({"character": "wukong", "metrics": metrics}))
    (tmp_path / "merged" / "kit_merge.json").write_text(json.dumps({"character": "wukong"}))
    for n in (4, 6):
        out = io.StringIO()
        assert not render(Console(file=out, width=400), f"lab {n}", run_lab_check(n, tmp_path, "bajie"))
        assert "is for 'wukong', not 'bajie'" in out.getvalue(), out.getvalue()
