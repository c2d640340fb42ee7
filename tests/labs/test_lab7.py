"""Lab 7 on a user's own project tree (KIT_HOME): a new character, its recipe, and what is still missing."""

import shutil

from kit_testing import ROOT, run_kit


def test_own_character_check_names_each_missing_stage(tmp_path):
    home = tmp_path / "project"
    (home / "recipes").mkdir(parents=True)
    shutil.copy(ROOT / "recipes" / "bajie.py", home / "recipes" / "bajie.py")
    shutil.copytree(ROOT / "labs", home / "labs")
    persona = (ROOT / "datasets" / "bajie" / "persona.yaml").read_text(encoding="utf-8")
    (home / "datasets" / "wukong").mkdir(parents=True)
    (home / "datasets" / "wukong" / "persona.yaml").write_text(
        persona.replace("character: bajie", "character: wukong").replace("name: 猪八戒", "name: 孙悟空"),
        encoding="utf-8")
    env = {"KIT_HOME": str(home), "COLUMNS": "400"}

    new = run_kit("recipe", "new", "wukong", env=env)
    assert new.returncode == 0 and (home / "recipes" / "wukong.py").is_file(), new.stdout + new.stderr

    result = run_kit("lab", "check", "7", "--character", "wukong", "--workdir", str(tmp_path / "lab7"), env=env)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "孙悟空" in out and "wukong.py parses" in out  # persona and recipe found
    for stage in ("lab 2: data/train.jsonl", "lab 3: XTuner checkpoints", "lab 4: merged model loads",
                  "lab 5: servers answer", "lab 6: eval/report.json"):
        assert stage in out, stage
    assert "kit data build wukong -o" in out and "kit train recipes/wukong.py --cpu" in out

    course = run_kit("lab", "check", "7", "--workdir", str(tmp_path / "lab7"), env=env)
    assert course.returncode == 1 and "bajie is the course's" in course.stdout
