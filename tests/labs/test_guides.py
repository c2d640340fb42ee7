"""The guides: every lab listed, 中文 before English, every section there, every `kit` command real."""

import re
import shlex

import pytest
import typer
from course_walk import guide_commands

from kit.labs.catalog import load_labs
from kit_testing import run_kit

SECTIONS_ZH = ["### 目标", "### 命令", "### 预期输出", "### 常见错误", "### 练习"]
SECTIONS_EN = ["### Goal", "### Commands", "### Expected output", "### Common errors", "### Exercise"]


def guide_text(lab) -> str:
    return lab.path.read_text(encoding="utf-8")


def shell_lines(text: str) -> list[str]:
    return [command.line for command in guide_commands(text)]


def kit_invocations(text: str) -> list[list[str]]:
    calls = []
    for line in shell_lines(text):
        for part in re.split(r"&&|\|", line):
            words = shlex.split(part, comments=True)
            while words and "=" in words[0] and not words[0].startswith("-"):  # VAR=value prefixes
                words.pop(0)
            if words[:1] == ["kit"]:
                calls.append(words[1:])
    return calls


def test_list_shows_every_lab_in_order():
    labs = load_labs()
    assert [lab.n for lab in labs] == list(range(len(labs))) and len(labs) >= 8
    result = run_kit("lab", "list", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    for lab in labs:
        assert lab.title.split(" · ")[1] in result.stdout
        assert lab.slice and lab.minutes


@pytest.mark.parametrize("lab", load_labs(), ids=lambda lab: f"lab{lab.n}")
def test_guide_is_chinese_first_then_english_with_every_section(lab):
    text = guide_text(lab)
    zh, en = text.index("## 中文"), text.index("## English")
    assert zh < en
    for heading in SECTIONS_ZH:
        assert zh < text.index(heading) < en, heading
    for heading in SECTIONS_EN:
        assert text.index(heading) > en, heading
    assert "GPU slice" in text and "Time" in text and f"kit lab check {lab.n}" in text


@pytest.mark.parametrize("lab", load_labs(), ids=lambda lab: f"lab{lab.n}")
def test_every_kit_command_in_a_guide_exists_with_its_options(lab):
    from kit.cli import app

    root = typer.main.get_command(app)
    calls = kit_invocations(guide_text(lab))
    assert calls, "a guide without a single kit command"
    for words in calls:
        command, ctx_words = root, list(words)
        while hasattr(command, "commands") and ctx_words and not ctx_words[0].startswith("-"):
            name = ctx_words.pop(0)
            assert name in command.commands, f"`kit {' '.join(words)}`: no sub-command {name!r}"
            command = command.commands[name]
        known = {opt for param in command.params for opt in getattr(param, "opts", []) + getattr(param, "secondary_opts", [])}
        for word in ctx_words:
            if word.startswith("-"):
                assert word.split("=")[0] in known, f"`kit {' '.join(words)}`: unknown option {word}"


def test_show_renders_the_guide_and_unknown_lab_is_an_error():
    result = run_kit("lab", "show", "3", env={"COLUMNS": "120"})
    assert result.returncode == 0, result.stderr
    assert "xtuner train recipes/bajie.py" in result.stdout and "```" not in result.stdout  # rendered
    missing = run_kit("lab", "show", "42")
    assert missing.returncode == 2 and "no lab 42" in missing.stderr and "kit lab list" in missing.stderr


@pytest.mark.parametrize("lab", load_labs(), ids=lambda lab: f"lab{lab.n}")
def test_every_xtuner_chat_gets_the_persona_and_a_reply_limit(lab):
    """xtuner chat ignores the model's chat template (no --system: no persona, even on a merged model),
    and without --max-new-tokens the tiny model talks for 2,048 tokens (~5 minutes on a CPU)."""
    for line in shell_lines(guide_text(lab)):
        if line.startswith("xtuner chat"):
            assert "--system" in line and "--prompt-template" in line, line
            assert "--max-new-tokens" in line, line


def test_lab0_manual_install_is_the_readmes():
    """One manual path, tested by CI's own fresh-clone set-up: the README's `--no-deps` lines."""
    from kit_testing import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    manual = [line for line in shell_lines(readme) if line.startswith("pip install --no-deps")]
    assert len(manual) == 2
    setup = guide_text(load_labs()[0])
    for line in manual:
        assert setup.count(line) == 2, line  # in the 中文 and the English section
    assert "pip install -e '.[test]'" not in setup
