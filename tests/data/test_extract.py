"""Extraction from a script and a novel passage written in other hands' styles: every line, nothing else."""

import json
import shutil

from kit_testing import ROOT, run_kit

from kit.data.extract import detect_format, extract_lines

SCRIPT = """\
《碎玉轩》第一集 分场剧本
第一场
场景：碎玉轩　日
（甄嬛坐在窗前绣花，浣碧端茶进来。）
浣碧：小主，喝口茶歇歇吧。
甄嬛（笑）：你倒是比我还操心。
槿汐:小主，皇上今晚怕是要来。
嬛嬛：知道了，去备些点心。
皇上（画外音）：朕来看看你。
甄嬛（起身，行礼）: 臣妾恭迎皇上。
甄嬛：（叹气）罢了，随他去吧。
【转场】
甄嬛：这宫里的日子，一天比一天难熬了。
浣碧：小主说的是。
莞嫔：浣碧，你记着，在这宫里要谨言慎行。
旁白：那一夜，碎玉轩的灯一直亮着。

第二场
△ 御花园，甄嬛与温实初相遇。
温实初：微臣参见莞嫔小主。
甄嬛：温大人不必多礼。这园子里的花开得正好，
只可惜无人细看。
温实初：小主保重身子要紧。
"""

NOVEL = """\
第五十回　呆子贪睡误了时辰

却说那日天晚，师徒来到一座古庙，庙门上写着“观音禅院”四个大字。长老下马道：“徒弟，今晚就在此安歇。”\
八戒闻言，喜得抓耳挠腮道：“好好好！老猪正困哩。”行者道：“呆子，先去打扫干净再睡。”

那呆子嘟着嘴，扛起扫帚道：“猴哥又使唤俺。”又道：“扫完了可要先开饭。”沙僧笑八戒道：「二哥，你扫地时莫偷吃供果。」\
八戒听得此言，丢了扫帚，跳将起来道：「兄弟休要冤枉好人！」

到了半夜，行者见八戒睡得正香，拔一根毫毛，变作个蚊子，叮他一口。猪八戒翻身叫道：“哪里来的蚊子，咬杀我也！”\
长老惊醒，问道：“悟能，何事喧哗？”悟能应道：“师父，没事没事，是个蚊子。”
"""
BAJIE = ["八戒", "猪八戒", "呆子", "悟能"]


def test_script_finds_every_line_of_the_character_and_nothing_else():
    lines, fmt = extract_lines(SCRIPT, ["甄嬛", "嬛嬛", "莞嫔"])
    assert fmt == "script"
    # Two lines in a row (10, 11) are one reply to the line before them.
    assert [(line.line, line.text) for line in lines] == [
        (6, "你倒是比我还操心。"), (8, "知道了，去备些点心。"), (10, "臣妾恭迎皇上。罢了，随他去吧。"),
        (13, "这宫里的日子，一天比一天难熬了。"),
        (15, "浣碧，你记着，在这宫里要谨言慎行。"), (21, "温大人不必多礼。这园子里的花开得正好，只可惜无人细看。")]
    users = [line.user for line in lines]
    # The utterance before (any other speaker), the stage direction when none, None after a scene break.
    assert users == ["小主，喝口茶歇歇吧。", "小主，皇上今晚怕是要来。", "朕来看看你。", None,
                     "小主说的是。", "微臣参见莞嫔小主。"]


def test_novel_attributes_each_quote_to_its_speaker():
    lines, fmt = extract_lines(NOVEL, BAJIE)
    assert fmt == "novel"
    # 又道 right after his line goes on with it; after narration (到了半夜…) a new line starts.
    assert [line.text for line in lines] == [
        "好好好！老猪正困哩。", "猴哥又使唤俺。扫完了可要先开饭。", "兄弟休要冤枉好人！",
        "哪里来的蚊子，咬杀我也！", "师父，没事没事，是个蚊子。"]
    assert [line.user for line in lines] == [
        "徒弟，今晚就在此安歇。", "呆子，先去打扫干净再睡。",
        "二哥，你扫地时莫偷吃供果。", "二哥，你扫地时莫偷吃供果。", "悟能，何事喧哗？"]


def test_novel_speaker_named_after_the_quote():
    text = ("第一章\n他回头看了一眼。“师父，”八戒道，“咱们走罢。”行者笑道：“呆子又偷懒。”\n"
            "“俺老猪才不偷懒。”八戒嚷道。庙门上写着“观音禅院”四个大字。\n"
            "“你这呆子！”行者骂道。“哪里走！”八戒说，“吃俺一耙！”“明日再说，”三藏道，“都睡罢。”\n")
    lines, _ = extract_lines(text, BAJIE, "novel")
    # A split quote is one line; a name in a quote (呆子) or a plain quoted noun is nobody's line.
    assert [(line.user, line.text) for line in lines] == [
        ("他回头看了一眼。", "师父，咱们走罢。"), ("呆子又偷懒。", "俺老猪才不偷懒。"),
        ("你这呆子！", "哪里走！吃俺一耙！")]


def test_every_colon_form_labels_a_line():
    # ︰ ﹕ ∶ stand in for ： in OCR'd and hand-typed texts; missed, 悟空's line was glued onto 八戒's.
    script = "第一场\n悟空︰呆子，快走。\n八戒﹕俺走不动了。\n悟空∶那就歇歇。\n八戒：好。\n"
    lines, fmt = extract_lines(script, BAJIE)
    assert fmt == "script"
    assert [(line.user, line.text) for line in lines] == [("呆子，快走。", "俺走不动了。"), ("那就歇歇。", "好。")]
    novel = "第一回\n行者道︰“呆子，快走。”八戒道∶“俺走不动了。”沙僧道﹕“歇歇罢。”八戒喜道：“好。”\n"
    lines, _ = extract_lines(novel, BAJIE, "novel")
    assert [(line.user, line.text) for line in lines] == [("呆子，快走。", "俺走不动了。"), ("歇歇罢。", "好。")]


def test_lines_in_a_row_are_one_reply_and_a_direction_between_keeps_them_apart():
    script = "第一场\n悟空：呆子，吃饱了么？\n八戒：饱了。\n八戒：再来一碗也行。\n（八戒起身）\n八戒：走罢。\n"
    lines, _ = extract_lines(script, BAJIE, "script")
    assert [(line.line, line.user, line.text) for line in lines] == [
        (3, "呆子，吃饱了么？", "饱了。再来一碗也行。"), (6, "呆子，吃饱了么？", "走罢。")]


def test_novel_name_then_an_action_before_the_speech_verb():
    # The clause after the comma says how he speaks (懒懒的, 慌忙): it is no other speaker's name.
    text = ("第一回\n行者道：“呆子，快走。”八戒也不回头，懒懒的道：“俺走不动了。”\n"
            "三藏道：“悟能，妖怪来了。”八戒丢了钉耙，慌忙道：“师父快跑！”\n")
    lines, _ = extract_lines(text, BAJIE, "novel")
    assert [(line.user, line.text) for line in lines] == [
        ("呆子，快走。", "俺走不动了。"), ("悟能，妖怪来了。", "师父快跑！")]


def test_auto_format_tells_script_from_novel():
    assert detect_format(SCRIPT) == "script"
    assert detect_format(NOVEL) == "novel"


def test_extract_command_writes_messages_with_the_persona_prompt(tmp_path):
    src = tmp_path / "chapter.txt"
    src.write_text(NOVEL, encoding="utf-8")
    out = tmp_path / "lines.jsonl"
    result = run_kit("data", "extract", str(src), "--character", "bajie", "-o", str(out))
    assert result.returncode == 0, result.stderr
    from kit.persona import persona_for

    system = persona_for("bajie").system_prompt
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 5
    assert all([m["role"] for m in r["messages"]] == ["system", "user", "assistant"] for r in rows)
    assert {r["messages"][0]["content"] for r in rows} == {system}
    assert rows[0]["messages"][2]["content"] == "好好好！老猪正困哩。"  # no quotation marks


def test_extract_says_when_it_finds_nothing(tmp_path):
    src = tmp_path / "other.txt"
    src.write_text(SCRIPT, encoding="utf-8")
    result = run_kit("data", "extract", str(src), "--character", "bajie", "-o", str(tmp_path / "o.jsonl"))
    assert result.returncode == 2
    assert "no line of bajie found" in result.stderr and "--alias" in result.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_extract_refuses_to_write_over_its_source_or_onto_a_folder(tmp_path):
    src = tmp_path / "chapter.txt"
    src.write_text(NOVEL, encoding="utf-8")
    (tmp_path / "link.txt").symlink_to(src)
    persona = tmp_path / "persona.yaml"
    persona.write_text("name: 猪八戒\naliases: [八戒, 呆子, 悟能]\nsystem_prompt: 你是猪八戒。\n"
                       "probe_questions: [你是谁？]\n", encoding="utf-8")
    base = ["data", "extract", str(src), "--character", "bajie", "--persona", str(persona)]
    wide = {"COLUMNS": "400"}  # no message is wrapped
    (tmp_path / "sub").mkdir()
    for out in (src, tmp_path / "link.txt", tmp_path / "sub" / ".." / "chapter.txt", persona):
        result = run_kit(*base, "-o", str(out), env=wide)
        assert result.returncode == 2, result.stderr
        assert f"-o {out} is the" in result.stderr and "writing it would destroy it" in result.stderr
    assert src.read_text(encoding="utf-8") == NOVEL
    assert persona.read_text(encoding="utf-8").startswith("name: 猪八戒")

    result = run_kit(*base, "-o", str(tmp_path), env=wide)
    assert result.returncode == 2, result.stderr
    assert f"-o {tmp_path}: is a folder" in result.stderr
    assert f"fix: name a file, e.g. -o {tmp_path / 'lines.jsonl'}" in result.stderr


def test_extract_refuses_a_folder_as_source_and_a_copied_persona_naming_another_character(tmp_path, monkeypatch):
    result = run_kit("data", "extract", str(tmp_path), "--character", "bajie", "-o", str(tmp_path / "o.jsonl"))
    assert result.returncode == 2 and f"source {tmp_path} is a folder" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    # datasets/wukong/persona.yaml copied from 八戒's and left saying `character: bajie`: 悟空's lines
    # would be written under 八戒's system prompt.
    home = tmp_path / "home"
    shutil.copytree(ROOT / "datasets" / "bajie", home / "datasets" / "wukong", ignore=shutil.ignore_patterns("built"))
    result = run_kit("data", "extract", str(home / "datasets/wukong/sources/script.txt"), "--character", "wukong",
                     "-o", str(tmp_path / "lines.jsonl"), env={"KIT_HOME": str(home), "COLUMNS": "300"})
    assert result.returncode == 2 and "character 'bajie', but the folder is 'wukong'" in result.stderr, result.stderr
    assert not (tmp_path / "lines.jsonl").exists()
