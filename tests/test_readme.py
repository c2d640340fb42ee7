"""README.md's commands, run as written (LitGPT's test_readme): the two set-up commands and the CLI."""

import json
import re

from kit_testing import ROOT, run_kit

README = (ROOT / "README.md").read_text(encoding="utf-8")


def quick_start_commands() -> list[str]:
    block = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]


def test_two_commands_and_ci_runs_the_test_one():
    assert quick_start_commands() == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "\nmake test\n" in ci  # CI runs README's test command exactly as written


def test_every_kit_command_in_readme_exists():
    commands = set(re.findall(r"`kit ([a-z]+)(?: ([a-z]+))?", README))
    assert {c for c, _ in commands} >= {"doctor", "demo", "data", "train", "merge", "quantize", "serve",
                                        "eval", "lab"}
    for command, sub in commands:
        args = [command, sub] if sub and command in ("data", "lab", "recipe") else [command]
        result = run_kit(*args, "--help")
        assert result.returncode == 0, f"kit {' '.join(args)}: {result.stderr[-500:]}"


def test_make_demo_leaves_every_stage(make_demo):
    """`make demo` exactly as README says, into a scratch workdir: every artifact PRODUCT.md names."""
    work, result = make_demo
    for part in ("base/config.json", "data/train.jsonl", "data/eval.jsonl", "work/last_checkpoint",
                 "adapter/adapter_config.json", "merged/config.json", "eval/report.json"):
        assert (work / part).exists(), part
    ppl = json.loads((work / "eval" / "report.json").read_text())["metrics"]["heldout_perplexity"]
    assert ppl["tuned"] < ppl["base"], ppl
    # the next command, on one unbroken line whatever the path's length
    where = work.resolve()
    assert f"kit serve --engine transformers --base {where}/base --tuned {where}/merged" in result.stdout


def test_requirements_txt_is_uv_lock():
    """README's manual path installs requirements.txt: it must pin exactly what uv.lock pins."""
    import tomllib

    lock = {p["name"]: p["version"] for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]
            if p["name"] != "kit"}
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", (ROOT / "requirements.txt").read_text(), re.M))
    norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
    pins = {norm(k): v for k, v in pins.items()}
    missing = {k: v for k, v in lock.items() if k != "liger-kernel" and pins.get(norm(k)) != v}
    assert not missing, f"run `make lock`: requirements.txt differs from uv.lock for {missing}"
