"""The `kit` command: every stage of PRODUCT.md's contract is there; help is quick; doctor runs cleanly."""

import subprocess
import sys

from kit_testing import ROOT, run_kit

CONTRACT = ["doctor", "demo", "data", "train", "merge", "quantize", "serve", "eval", "lab"]
# Seconds of import each (torch alone ~3 s here): a command imports them when it does its work, not for --help.
HEAVY = {"torch", "torchvision", "transformers", "xtuner", "mmengine", "datasets", "peft", "bitsandbytes",
         "streamlit", "pandas", "openai", "matplotlib"}


def test_help_lists_every_stage():
    result = run_kit("--help")
    assert result.returncode == 0
    for command in CONTRACT:
        assert f" {command} " in result.stdout, command


def test_help_imports_no_heavy_library():
    helps = [["--help"], *([command, "--help"] for command in CONTRACT)]
    code = f"""
import sys
from kit.cli import app
for argv in {helps!r}:
    try:
        app(argv, prog_name="kit")
    except SystemExit:
        pass
print(sorted({{m.split(".")[0] for m in sys.modules}}.intersection({sorted(HEAVY)!r})))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_doctor_runs_without_traceback():
    result = run_kit("doctor", env={"COLUMNS": "200"})
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode in (0, 1)
    for name in ("transformers", "xtuner", "torchvision matches torch", "bitsandbytes", "GPU"):
        assert name in result.stdout
    # On this CPU-only machine the missing GPU is a warning, not a blocking problem.
    assert result.returncode == 0, result.stdout


def test_bad_persona_names_field(tmp_path):
    from kit.errors import KitError
    from kit.persona import load_persona

    bad = tmp_path / "persona.yaml"
    bad.write_text("name: 八戒\nsystem_prompt: 你是八戒\nprobe_questions: 你是谁\n", encoding="utf-8")
    try:
        load_persona(bad)
    except KitError as e:
        assert "probe_questions" in str(e) and str(bad) in str(e)
    else:
        raise AssertionError("a string where a list belongs must be refused")
