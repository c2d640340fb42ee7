"""Walk the course on the tiny model: one `kit demo` (shared), each lab's own commands, each check.

Labs 1, 2 and 4 run their guide's commands into a fresh workdir `walk`; labs 3, 5 and 6 reuse the
demo's training run, servers are started by the check itself. Every check must pass after its lab.
"""

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from kit.labs.checks import run_lab_check
from kit.labs.findings import OK, render
from kit_testing import ROOT, run_kit

PERSONA = str(ROOT / "datasets" / "bajie" / "persona.yaml")
# The first test that uses the demo pays for the whole pipeline run (train included).
pytestmark = pytest.mark.timeout(3600)


def passes(n: int, workdir) -> str:
    out = io.StringIO()
    findings = run_lab_check(n, workdir, "bajie")
    ok = render(Console(file=out, width=300), f"lab {n}", findings)
    assert ok and all(f.status in (OK, "info") for f in findings), out.getvalue()
    return out.getvalue()


def ok(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="session")
def demo(make_demo):
    return make_demo[0]


@pytest.fixture(scope="session")
def walk(tmp_path_factory):
    return tmp_path_factory.mktemp("labs") / "walk"


def test_lab0_doctor():
    assert "lab passed" in ok(run_kit("lab", "check", "0", env={"COLUMNS": "200"})).stdout


def test_lab1_init_and_chat(walk):
    assert "tiny InternLM2 for bajie" in ok(run_kit("lab", "init", "--workdir", str(walk))).stdout
    passes(1, walk)
    bin_dir = Path(sys.executable).parent  # xtuner runs the `python` on PATH: this environment's
    chat = subprocess.run(
        [str(bin_dir / "xtuner"), "chat", str(walk / "base"), "--prompt-template", "internlm2_chat",
         "--system", "你是猪八戒", "--max-new-tokens", "8", "--torch-dtype", "fp32"],
        input="你是谁？\n\nEXIT\n\n", capture_output=True, text=True, timeout=600, cwd=ROOT,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert "Load LLM from" in chat.stdout and "Traceback" not in chat.stdout + chat.stderr, chat.stderr[-2000:]


def test_lab2_dataset(walk):
    script = ok(run_kit("data", "extract", str(ROOT / "datasets/bajie/sources/script.txt"), "--character", "bajie",
                        "-o", str(walk / "lines" / "script.jsonl")))  # beside data/, which build replaces
    assert "lines of bajie" in script.stdout + script.stderr
    ok(run_kit("data", "build", "bajie", "-o", str(walk / "data"), "--tokenizer", str(walk / "base")))
    ok(run_kit("data", "check", str(walk / "data" / "train.jsonl"), "--persona", PERSONA))
    passes(2, walk)


def test_lab2_check_names_a_broken_line(walk, tmp_path):
    shutil.copytree(walk / "data", tmp_path / "data")
    lines = (tmp_path / "data" / "eval.jsonl").read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace('"assistant"', '"bot"')
    (tmp_path / "data" / "eval.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = io.StringIO()
    assert not render(Console(file=out, width=300), "lab 2", run_lab_check(2, tmp_path, "bajie"))
    assert "eval.jsonl:2: messages[2]: unknown role 'bot'" in out.getvalue(), out.getvalue()


def test_lab3_training(demo, walk):
    plan = ok(run_kit("train", "recipes/bajie.py", "--cpu", "--base", str(walk / "base"),
                      "--data-dir", str(walk / "data"), "--plan-only"))
    assert "data ok" in plan.stdout + plan.stderr and "memory plan" in plan.stdout + plan.stderr
    passes(3, demo)


def test_lab4_merge(demo, walk):
    ok(run_kit("merge", str(demo / "work"), "--base", str(walk / "base"), "--adapter-out", str(walk / "adapter"),
               "-o", str(walk / "merged")))
    assert "merged logits = base + adapter" in passes(4, walk)


def test_lab4_check_catches_a_wrong_merge(demo, tmp_path):
    for name in ("base", "adapter"):
        shutil.copytree(demo / name, tmp_path / name)
    shutil.copytree(demo / "base", tmp_path / "merged")  # "merged" without the adapter
    out = io.StringIO()
    assert not render(Console(file=out, width=300), "lab 4", run_lab_check(4, tmp_path, "bajie"))
    assert "merged logits = base + adapter" in out.getvalue() and "differ from base + adapter" in out.getvalue()


def test_lab5_servers_answer(demo):
    assert "the same streamed in" in passes(5, demo)


def test_lab6_report(demo):
    assert "held-out perplexity" in passes(6, demo)
