"""Artifacts carry their persona: a later stage takes the character from what it is given."""

import io
import json
import shutil

import pytest
from rich.console import Console

from kit.artifacts import choose_persona, persona_record
from kit.errors import KitError
from kit.persona import persona_for
from kit_testing import ROOT


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A project tree with 八戒 and a second character, 悟空."""
    shutil.copytree(ROOT / "datasets" / "bajie", tmp_path / "datasets" / "bajie", ignore=shutil.ignore_patterns("built"))
    (tmp_path / "datasets" / "wukong").mkdir()
    (tmp_path / "datasets" / "wukong" / "persona.yaml").write_text(
        "name: 孙悟空\nsystem_prompt: 你是孙悟空。\nprobe_questions: [你是谁？]\n", encoding="utf-8")
    monkeypatch.setenv("KIT_HOME", str(tmp_path))
    return tmp_path


def model(home, name, record):
    folder = home / name
    folder.mkdir()
    (folder / "kit_merge.json").write_text(json.dumps(record), encoding="utf-8")
    return folder


def choose(option, *artifacts):
    out = io.StringIO()
    persona = choose_persona(option, list(artifacts), Console(file=out, width=300))
    return persona, out.getvalue()


def test_the_model_names_the_persona(home):
    tuned = model(home, "merged", persona_record(persona_for("wukong")))
    persona, said = choose(None, home / "base", tuned, "http://127.0.0.1:23333/v1")
    assert persona.character == "wukong"
    assert f"persona: 孙悟空 (wukong, from {tuned / 'kit_merge.json'})" in said and "warning" not in said


def test_an_override_that_differs_warns(home):
    tuned = model(home, "merged", {"character": "wukong"})
    persona, said = choose("bajie", tuned)
    assert persona.character == "bajie" and "was made for 'wukong'; using 'bajie' as --character asks" in said


def test_a_quantized_model_defers_to_its_source(home):
    merged = model(home, "merged", {"character": "wukong"})
    (home / "merged-w4a16").mkdir()
    (home / "merged-w4a16" / "kit_quant.json").write_text(json.dumps({"source": str(merged)}), encoding="utf-8")
    assert choose(None, home / "merged-w4a16")[0].character == "wukong"


def test_no_record_is_the_course_default_and_says_so(home):
    persona, said = choose(None, home / "base", None)
    assert persona.character == "bajie" and "the course's default: no model given records a character" in said


def test_two_characters_need_an_explicit_choice(home):
    with pytest.raises(KitError, match="different characters"):
        choose(None, model(home, "a", {"character": "wukong"}), model(home, "b", {"character": "bajie"}))


def test_an_edited_persona_is_noticed(home):
    tuned = model(home, "merged", persona_record(persona_for("wukong")))
    with (home / "datasets" / "wukong" / "persona.yaml").open("a", encoding="utf-8") as f:
        f.write("aliases: [猴哥]\n")
    assert "changed since" in choose(None, tuned)[1]


def test_a_broken_record_names_its_file(home):
    (home / "merged").mkdir()
    (home / "merged" / "kit_merge.json").write_text("{", encoding="utf-8")
    with pytest.raises(KitError, match="kit_merge.json: not a readable JSON record"):
        choose(None, home / "merged")


def test_a_copied_persona_still_naming_another_character_is_refused(home):
    """lab 7 starts from a copy of 八戒's persona.yaml: left as `character: bajie`, every record would say bajie."""
    (home / "datasets" / "wukong" / "persona.yaml").write_text(
        "character: bajie\nname: 孙悟空\nsystem_prompt: 你是孙悟空。\nprobe_questions: [你是谁？]\n", encoding="utf-8")
    with pytest.raises(KitError, match=r"persona.yaml:1: character 'bajie', but the folder is 'wukong'"):
        persona_for("wukong")
