"""persona.yaml checked field by field: a typo, a wrong type or a missing field names FILE:LINE and the fix."""

import re

import pytest
from kit_testing import ROOT

from kit.errors import KitError
from kit.persona import FIELDS, load_persona


def _error(tmp_path, text: str) -> str:
    path = tmp_path / "persona.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(KitError) as e:
        load_persona(path)
    return str(e.value)


def test_a_misspelled_field_is_refused_with_the_closest_one(tmp_path):
    # `style_marker:` used to be ignored without a word: no markers, so no style filter and no style score.
    error = _error(tmp_path, "name: 八戒\nsystem_prompt: 你是八戒\nprobe_questions: [你是谁？]\nstyle_marker: [俺老猪]\n")
    assert f"{tmp_path / 'persona.yaml'}:4: 'style_marker' is not a field of persona.yaml" in error
    assert "did you mean 'style_markers'?" in error


def test_every_problem_of_the_file_at_once_each_with_its_line(tmp_path):
    error = _error(tmp_path, "name: 八戒\n"
                             "aliases: 呆子\n"               # a string where a list belongs
                             "probe_questions:\n  - 你是谁？\n  - ''\n"  # an empty item
                             "catchphrase: [俺老猪]\n"       # a typo
                             "name: 猪八戒\n")               # given twice: YAML would keep only the last
    path = tmp_path / "persona.yaml"
    assert error.startswith(f"5 problems in {path}:")
    assert f"{path}:1: missing field 'system_prompt'" in error
    assert f"{path}:2: field 'aliases' must be a list of non-empty strings, got the string '呆子'" in error
    assert f"{path}:5: field 'probe_questions[1]' must be a non-empty string" in error
    assert f"{path}:6: 'catchphrase' is not a field of persona.yaml" in error and "'catchphrases'?" in error
    assert f"{path}:7: field 'name' is given twice (lines 1 and 7)" in error
    assert f"{path}:2: field 'probe_questions' is empty" in _error(tmp_path, "name: 八戒\nprobe_questions: []\n")


def test_the_course_persona_loads_and_docs_list_its_fields():
    persona = load_persona(ROOT / "datasets" / "bajie" / "persona.yaml")
    assert persona.name == "猪八戒" and persona.style_markers and persona.probe_questions
    # docs/persona.md's field table says what FIELDS checks: the same fields, the same required ones.
    table = re.findall(r"^\| `(\w+)` \| (yes|no) \|", (ROOT / "docs" / "persona.md").read_text(encoding="utf-8"), re.M)
    assert {key: required == "yes" for key, required in table} == {k: f.required for k, f in FIELDS.items()}
