"""`kit data build`: held-out eval by line, weights, dedup/filters counted in the card, determinism."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from kit_testing import ROOT

from kit.data.build import build_character
from kit.data.check import line_problems
from kit.data.config import load_build_config
from kit.errors import KitError
from kit.persona import persona_for


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _replies(rows: list[dict]) -> set[str]:
    return {"\n".join(m["content"] for m in r["messages"] if m["role"] == "assistant") for r in rows}


def test_build_bajie_holds_eval_lines_out_and_is_deterministic(tmp_path, tiny_model):
    first = build_character("bajie", tmp_path / "a", tokenizer=tiny_model)
    second = build_character("bajie", tmp_path / "b", tokenizer=tiny_model)
    for name in ("train.jsonl", "eval.jsonl"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    train, held_out = _rows(first / "train.jsonl"), _rows(first / "eval.jsonl")
    assert 200 <= len(train) <= 400 and held_out
    assert not _replies(train) & _replies(held_out), "an eval line leaked into train"
    system = persona_for("bajie").system_prompt
    assert line_problems(first / "train.jsonl", system) == []
    assert line_problems(first / "eval.jsonl", system) == []
    card = json.loads((first / "card.json").read_text(encoding="utf-8"))
    assert card["counts"] == {"train": len(train), "eval": len(held_out)}
    assert card["tokens"]["train"]["max"] > card["tokens"]["train"]["min"] > 0
    assert (first / "length_hist.png").read_bytes()[:4] == b"\x89PNG"
    # Weights repeat training samples: the script's lines appear `weight` times each.
    script = next(s for s in card["sources"] if s["path"].endswith("script.txt"))
    assert script["train"] == script["weight"] * (script["kept"] - script["eval"])


FILLER = ["今天化缘化到三个馒头。", "猴哥又去探路了。", "沙师弟挑着担子走在后面。", "师父在树下念经。",
          "前面那座山看着就有妖怪。", "高老庄的油饼最香。", "钉耙扛久了肩膀疼。", "白龙马也累得直喘气。",
          "晚上睡在破庙里漏雨。", "女儿国的瓜果又大又甜。"]


def test_build_counts_what_dedup_and_filters_remove(tmp_path, tiny_model, monkeypatch):
    home = tmp_path / "home"
    folder = home / "datasets" / "demo"
    (folder / "sources").mkdir(parents=True)
    persona = (ROOT / "datasets/bajie/persona.yaml").read_text(encoding="utf-8")
    (folder / "persona.yaml").write_text(persona.replace("character: bajie", "character: demo"), encoding="utf-8")
    pairs = [("你是谁", "俺老猪是天蓬元帅下凡。"), ("再说一遍", "俺老猪是天蓬元帅下凡！"),  # duplicate
             ("还是你", "俺老猪是天蓬元帅下凡了呀。"),  # near duplicate
             ("英文", "I am Zhu Bajie, the pig."), ("AI?", "作为AI，我不能回答。"),
             ("长", "饿" * 301)] + [(f"问题{i}", line) for i, line in enumerate(FILLER)]
    lines = [json.dumps({"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]},
                        ensure_ascii=False) for u, a in pairs]
    (folder / "sources" / "qa.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "build.yaml").write_text(yaml.safe_dump({
        "seed": 1, "eval_fraction": 0.2,
        "sources": [{"path": "sources/qa.jsonl", "format": "messages", "weight": 0.5}]}), encoding="utf-8")
    monkeypatch.setenv("KIT_HOME", str(home))
    out = build_character("demo", tokenizer=tiny_model)
    assert out == folder / "built"
    card = json.loads((out / "card.json").read_text(encoding="utf-8"))
    assert card["removed"] == {"duplicate": 1, "near duplicate": 1, "not Chinese": 1,
                               "out of character": 1, "too long": 1}
    source = card["sources"][0]
    assert source["found"] == 16 and source["kept"] == 11 and source["eval"] == 2
    assert 2 <= source["train"] <= 7  # weight 0.5 keeps about half of the 9 training lines
    assert (out / "card.md").read_text(encoding="utf-8").startswith("# Dataset card: 猪八戒 (demo)")


def test_build_yaml_refuses_a_quoted_false_and_a_misspelled_field(tmp_path):
    # `require_markers: "false"` is a string, which Python counts as true: it used to drop every reply
    # without a style marker. `wieght` used to be ignored, leaving the weight at 1.
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "qa.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "build.yaml").write_text("seed: 42\nsources:\n  - path: sources/qa.jsonl\n    format: messages\n"
                                         '    require_markers: "false"\n    wieght: 3\n'
                                         "  - {path: sources/gone.txt, format: script}\n", encoding="utf-8")
    with pytest.raises(KitError) as e:
        load_build_config(tmp_path)
    path = tmp_path / "build.yaml"
    assert str(e.value).startswith(f"3 problems in {path}:")
    assert (f"{path}:5: field 'sources[0].require_markers' must be true or false, got the string 'false'"
            in str(e.value)) and "write require_markers: false without quotes" in str(e.value)
    assert f"{path}:6: 'wieght' is not a field of sources[0]" in str(e.value) and "'weight'?" in str(e.value)
    assert f"{path}:7: sources[1].path: {tmp_path / 'sources/gone.txt'} not found" in str(e.value)


def test_build_yaml_checks_numbers_and_filters(tmp_path):
    (tmp_path / "build.yaml").write_text("seed: 4.5\neval_fraction: '0.2'\nfilters: {max_char: 100}\n",
                                         encoding="utf-8")
    with pytest.raises(KitError) as e:
        load_build_config(tmp_path)
    path = tmp_path / "build.yaml"
    assert f"{path}:1: field 'seed' must be a whole number, got the number 4.5" in str(e.value)
    assert f"{path}:2: field 'eval_fraction' must be a number from 0 to 0.9" in str(e.value)
    assert "write eval_fraction: 0.2 without quotes" in str(e.value)
    assert f"{path}:3: 'max_char' is not a field of filters" in str(e.value) and "'max_chars'?" in str(e.value)


def test_the_card_says_which_tokenizer_counted(tmp_path, tiny_model):
    """The tiny model's counts are not a real base's: the console and card.md say whose they are."""
    from kit.data.build import counting_tokenizer

    path, said = counting_tokenizer("bajie", None)
    assert "tiny model's" in said and "recipes/bajie.py's base" in said and "--tokenizer BASE_FOLDER" in said
    assert counting_tokenizer("bajie", tiny_model) == (tiny_model, "given with --tokenizer")
    card = (build_character("bajie", tmp_path / "built") / "card.md").read_text(encoding="utf-8")
    assert f"tokenizer of the token counts: `{path}` (the tiny model's" in card


def test_build_never_writes_over_its_sources_nor_into_a_folder_kit_did_not_write(tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(ROOT / "datasets" / "bajie", home / "datasets" / "bajie", ignore=shutil.ignore_patterns("built"))
    monkeypatch.setenv("KIT_HOME", str(home))
    folder = home / "datasets" / "bajie"
    before = sorted(p.name for p in (folder / "sources").iterdir())
    for out in (folder / "sources", folder):
        with pytest.raises(KitError, match="replacing it would delete it"):
            build_character("bajie", out)
    assert sorted(p.name for p in (folder / "sources").iterdir()) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(KitError, match="kit did not write it"):
        build_character("bajie", mine)
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "mine"
