"""kit.workspace: the one place that names the workdir layout, and the finders every stage uses."""

import json
import os

from kit.workspace import Workspace, base_of, default_run, newest_merged, quantized_beside


def model(folder):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


def test_layout_is_the_one_demo_and_labs_leave(tmp_path):
    ws = Workspace(tmp_path)
    names = [p.relative_to(tmp_path).as_posix() for p in
             (ws.base, ws.data, ws.work, ws.adapter, ws.merged, ws.quantized, ws.eval)]
    assert names == ["base", "data", "work", "adapter", "merged", "merged-w4a16", "eval"]
    assert ws.train_file == tmp_path / "data" / "train.jsonl" and ws.report == tmp_path / "eval" / "report.json"
    assert Workspace.around(ws.merged) == ws
    assert quantized_beside(tmp_path / "m") == tmp_path / "m-w4a16"
    assert default_run(tmp_path / "recipes" / "bajie.py").as_posix() == "work_dirs/bajie"


def test_newest_merged_at_most_three_levels_down(tmp_path):
    old = model(tmp_path / "demo" / "merged")
    new = model(tmp_path / "runs" / "bajie" / "merged")
    os.utime(old / "config.json", (1, 1))
    model(tmp_path / "a" / "b" / "c" / "d" / "merged")  # too deep
    assert newest_merged(tmp_path) == new
    assert newest_merged(tmp_path / "empty") is None


def test_base_of_prefers_the_record_then_the_workspace_base(tmp_path):
    merged = model(tmp_path / "demo" / "merged")
    assert base_of(merged) is None
    sibling = model(tmp_path / "demo" / "base")
    assert base_of(merged) == sibling
    recorded = model(tmp_path / "elsewhere")
    (merged / "kit_merge.json").write_text(json.dumps({"base": str(recorded)}))
    assert base_of(merged) == recorded
    (merged / "kit_merge.json").write_text(json.dumps({"base": str(tmp_path / "gone")}))
    assert base_of(merged) == sibling
