"""The walk's participant for lab 7: someone who picked 孙悟空. Their persona.yaml is bajie's with every
field that speaks of 八戒/老猪 rewritten, and their texts are bajie's with the two disciples' parts swapped."""

import json
import re
from pathlib import Path

import yaml

from kit_testing import ROOT

BAJIE = ROOT / "datasets" / "bajie"

WUKONG = dict(
    character="wukong",
    name="孙悟空",
    aliases=["悟空", "孙悟空", "行者", "孙行者", "猴头", "猴哥", "老孙", "齐天大圣", "美猴王", "大师兄"],
    system_prompt=("你是孙悟空，人称孙行者，本是花果山水帘洞的美猴王，因大闹天宫被压在五行山下五百年，"
                   "如今保唐僧西天取经，是大徒弟。你神通广大，会七十二变，一个筋斗云十万八千里，使一根如意金箍棒；"
                   "你心高气傲、性子急躁，却忠心护师、嫉恶如仇；你自称“俺老孙”，叫猪八戒“呆子”，叫唐僧“师父”，"
                   "说话爽利，带点猴气和戏谑。请始终以孙悟空的身份、语气和口头禅回答，不要承认自己是AI或语言模型。"),
    style_markers=["俺老孙", "老孙", "师父", "呆子", "妖精", "金箍棒", "花果山", "筋斗云", "沙师弟"],
    catchphrases=["俺老孙来也", "吃俺老孙一棒", "呆子，休要胡说", "师父莫怕，有老孙在", "妖精哪里走"],
    probe_questions=["你是谁？", "你的师父是谁？", "你的老家在哪里？", "你怎么称呼猪八戒？", "你的兵器是什么？",
                     "你是人工智能吗？"],
    topics=["花果山", "大闹天宫", "五行山", "紧箍咒", "金箍棒", "筋斗云", "打妖精", "七十二变", "护送师父", "捉弄呆子"],
    sample_lines=["呆子，你莫要偷懒，师父还等着斋饭哩！", "师父莫怕，有俺老孙在，哪个妖精敢近身？", "妖精哪里走，吃俺老孙一棒！"],
)

# Every line 八戒 said is now 悟空's, and the monkey's lines go to 八戒, with the names, nicknames and
# self-references each uses swapped too.
SWAP = {"猪八戒": "孙悟空", "孙行者": "猪八戒", "猪悟能": "孙行者", "悟能": "悟空", "呆子": "猴头", "猴哥": "呆子",
        "老猪": "老孙", "老孙": "老猪", "天蓬元帅": "齐天大圣", "九齿钉耙": "金箍棒", "钉耙": "金箍棒", "金箍棒": "钉耙",
        "二师兄": "大师兄", "野猪": "野猴", "猪祖宗": "猴祖宗", "烤乳猪": "烤猴儿", "长嘴大耳": "毛脸雷公嘴",
        "高老庄": "花果山", "做女婿": "做大王", "当女婿": "当大王"}
SWAPS = {"script.txt": {**SWAP, "八戒": "悟空", "悟空": "八戒"},  # the script calls the monkey 悟空
         "novel.txt": {**SWAP, "八戒": "行者", "行者": "八戒"},  # the novel calls him 行者
         "persona_qa.jsonl": {**SWAP, "孙悟空": "猪八戒", "八戒": "悟空", "悟空": "八戒"}}


def swap(text: str, table: dict[str, str]) -> str:
    """Replace every key of `table` at once, longest first, so that 八戒→悟空 and 悟空→八戒 do not collide."""
    pattern = re.compile("|".join(map(re.escape, sorted(table, key=len, reverse=True))))
    return pattern.sub(lambda m: table[m.group(0)], text)


def bajie_lines_as_wukong(name: str) -> list[str]:
    """八戒's lines in bajie's source `name`, as kit extracts them, with the swap applied."""
    from kit.data.extract import extract_lines
    from kit.persona import load_persona

    bajie = load_persona(BAJIE / "persona.yaml")
    text = (BAJIE / "sources" / name).read_text(encoding="utf-8")
    lines, _ = extract_lines(text, sorted({bajie.name, *bajie.aliases}, key=len, reverse=True))
    return [swap(line.text, SWAPS[name]) for line in lines]


def persona() -> dict:
    return {**yaml.safe_load((BAJIE / "persona.yaml").read_text(encoding="utf-8")), **WUKONG}


def own_files(mine: Path) -> dict[str, str]:
    """Write the participant's files into `mine`; return what they type for each `# 换成你的` line of
    lab 7: their id, their persona (the guide's copy, then rewritten) and their texts. The persona Q&A
    stands for what `kit data generate` would have written (the walk has no LLM API), and build.yaml
    mixes the sources as bajie's does (the texts read as `auto`, as a participant's would be)."""
    mine.mkdir(parents=True)
    (mine / "persona.yaml").write_text(yaml.safe_dump(persona(), allow_unicode=True, sort_keys=False), encoding="utf-8")
    for name, table in SWAPS.items():
        (mine / name).write_text(swap((BAJIE / "sources" / name).read_text(encoding="utf-8"), table), encoding="utf-8")
    build = (BAJIE / "build.yaml").read_text(encoding="utf-8")
    (mine / "build.yaml").write_text(re.sub(r"format: (script|novel)", "format: auto", build), encoding="utf-8")
    return {
        "C=huanhuan": "C=wukong",
        "cp datasets/bajie/persona.yaml datasets/$C/persona.yaml":
            f"cp datasets/bajie/persona.yaml datasets/$C/persona.yaml && cp {mine}/persona.yaml datasets/$C/",
        "cp /path/to/your/script.txt datasets/$C/sources/script.txt":
            f"cp {mine}/script.txt {mine}/novel.txt {mine}/persona_qa.jsonl datasets/$C/sources/ "
            f"&& cp {mine}/build.yaml datasets/$C/",
    }


def persona_answers(folder: Path) -> list[str]:
    return [json.loads(line)["messages"][-1]["content"]
            for line in (folder / "persona_qa.jsonl").read_text(encoding="utf-8").splitlines()]
