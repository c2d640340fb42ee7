"""What the checks catch: a broken line of the dataset (lab 2) and a merge without the adapter (lab 4),
on copies of the demo's artifacts. That each lab passes its check after its commands is the walk's part
(test_guide_commands.py)."""

import io
import shutil

import pytest
from rich.console import Console

from kit.labs.checks import run_lab_check
from kit.labs.findings import render

# The first test that uses the demo pays for the whole pipeline run (train included).
pytestmark = pytest.mark.timeout(3600)


@pytest.fixture(scope="session")
def demo(make_demo):
    return make_demo[0]


def test_lab2_check_names_a_broken_line(demo, tmp_path):
    for name in ("base", "data"):
        shutil.copytree(demo / name, tmp_path / name)
    lines = (tmp_path / "data" / "eval.jsonl").read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace('"assistant"', '"bot"')
    (tmp_path / "data" / "eval.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = io.StringIO()
    assert not render(Console(file=out, width=300), "lab 2", run_lab_check(2, tmp_path, "bajie"))
    assert "eval.jsonl:2: messages[2]: unknown role 'bot'" in out.getvalue(), out.getvalue()


def test_lab4_check_catches_a_wrong_merge(demo, tmp_path):
    for name in ("base", "adapter"):
        shutil.copytree(demo / name, tmp_path / name)
    shutil.copytree(demo / "base", tmp_path / "merged")  # "merged" without the adapter
    out = io.StringIO()
    assert not render(Console(file=out, width=300), "lab 4", run_lab_check(4, tmp_path, "bajie"))
    assert "merged logits = base + adapter" in out.getvalue() and "differ from base + adapter" in out.getvalue()
