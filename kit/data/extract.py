"""`kit data extract`: a character's lines from a `角色：台词` script or from novel prose.

Both parsers turn the text into a sequence of utterances (speaker, text, line number) and scene breaks;
`pair_lines` then makes one sample per line of the character (lines in a row joined into one), with the
nearest earlier utterance by someone else in the same scene as the user turn (or, when the character
opens the scene, the stage direction or narration just before the line).
"""

import re
from dataclasses import dataclass
from pathlib import Path

from kit.errors import KitError

CHARACTER = "\0character"  # speaker id of the character's own lines
NARRATION = "\0narration"  # stage directions and narration: context only, never a line

_CJK = r"\u3400-\u9fff"
# Colons that label a line or introduce a quote: full/half width, and the vertical, small and ratio
# forms that OCR and some editors put in their place (unrecognised, they glue a line onto the last).
_COLONS = "：:︰﹕∶"
_COLON = f"[{_COLONS}]"
# Scene/chapter headings reset the context: 第一场 / 第3幕 / 第十回 / 场景：… / 【…】 / INT. …
_HEADING = re.compile(rf"^\s*(第[0-9{_CJK}]{{1,5}}[场幕集回章节]|(场景|地点|时间|人物|布景)\s*{_COLON}|"
                      r"[【\[].*[】\]]\s*$|(INT|EXT)\.)")
# 角色：台词, 角色（笑）：台词, 角色(笑): 台词 — a short label without sentence punctuation.
_SCRIPT_LINE = re.compile(rf"^\s*(?P<label>[{_CJK}A-Za-z0-9·・_ ]{{1,12}}?)\s*"
                          rf"(?:[（(](?P<direction>[^）)]{{0,20}})[）)])?\s*{_COLON}\s*(?P<text>.*\S)\s*$")
_DIRECTION_MARKS = ("△", "▲", "※", "（", "(", "[", "【")  # how screenplays mark stage directions
_PARENTHETICAL = re.compile(r"[（(][^）)]*[）)]")
_QUOTES = "“”「」『』\"'‘’"

# Novel prose: quotes, the speech verbs that introduce them, and lead-in words before a subject.
_QUOTE = re.compile(r"“(?P<a>[^“”]*)”|「(?P<b>[^「」]*)」")
_SPEECH_VERB = re.compile(rf"(道|说|曰|问|答|叫|喊|嚷|骂|念|喝)\s*({_COLON}|[，,])?\s*$")
# The speaker named after the quote, in modern prose: “…”八戒道。 / “…”八戒笑道，转身走了。 / “…，”八戒道，“…”
# A clause ending in a colon introduces the next quote instead, so it never matches here.
_TAG_AFTER = re.compile(rf"^\s*(?P<clause>[^“”「」。！？!?{_COLONS}，,]{{1,16}}?(道|说|曰|问|答|叫|喊|嚷|骂|念|喝))"
                        r"\s*(?P<end>[。！？!?]|[，,]|$)")
_LEAD_IN = ("却说", "话说", "只见", "只听得", "只听", "原来", "忽见", "慌得", "唬得", "急得", "喜得",
            "气得", "那个", "这个", "那", "这", "却", "又", "便", "也", "忙", "遂")
# A verb clause with nothing but adverbs before the verb continues the previous speaker: 又道 / 又笑道.
_CONTINUATION = re.compile(rf"^(又|便|却|也|遂|复|再)?[笑叫应嚷骂问答念喝哭叹]?道\s*({_COLON}|[，,])?\s*$")
_SENTENCE_END = re.compile(r"[。！？!?；;…\n]")
_NOT_IN_NAMES = set("又便却也遂复再那这他她笑叫应嚷骂问答念喝哭叹怒喜劝告说道大高低")
_NAMED_VERB = re.compile(rf"^([{_CJK}]{{2,3}}?)[笑叫应嚷骂问答念喝哭叹怒喜劝告]?道\s*({_COLON}|[，,])?\s*$")


@dataclass(frozen=True)
class Utterance:
    speaker: str  # CHARACTER, NARRATION or the label/subject text of someone else
    text: str
    line: int  # 1-based line number in the source


@dataclass(frozen=True)
class Line:
    """One line of the character with the turn before it (None: nothing came before it)."""
    user: str | None
    text: str
    line: int


def clean_line(text: str) -> str:
    """The spoken words only: no inline stage directions, no surrounding quotation marks."""
    text = _PARENTHETICAL.sub("", text).strip()
    return text.strip(_QUOTES + " \u3000").strip()


def _is_script_line(line: str) -> bool:
    m = _SCRIPT_LINE.match(line)
    return bool(m) and not m.group("text").startswith(("“", "「", "\""))


def detect_format(text: str) -> str:
    """'script' when most speaking lines look like `角色：台词`, else 'novel'."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not _HEADING.match(ln)]
    script = sum(_is_script_line(ln) for ln in lines)
    quoted = sum(bool(_QUOTE.search(ln)) for ln in lines)
    return "script" if script >= max(1, quoted) and script * 3 >= len(lines) else "novel"


def parse_script(text: str, names: set[str]) -> list[Utterance | None]:
    """Utterances of a script; None marks a scene break."""
    out: list[Utterance | None] = []
    spoken = False  # was the line just above (no blank line between) a speaker's line?
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            spoken = False
            continue
        if _HEADING.match(line):
            out.append(None)
            spoken = False
            continue
        m = _SCRIPT_LINE.match(line)
        if not m or not _is_script_line(line):
            if spoken and not line.startswith(_DIRECTION_MARKS):
                # A wrapped speech: the line goes on below its label.
                last = out[-1]
                out[-1] = Utterance(last.speaker, last.text + clean_line(line), last.line)
                continue
            direction = line.lstrip("".join(_DIRECTION_MARKS)).strip("（）() \u3000")
            if direction:
                out.append(Utterance(NARRATION, direction, no))
            spoken = False
            continue
        label = m.group("label").strip()
        speech = clean_line(m.group("text"))
        spoken = bool(speech)
        if speech:
            out.append(Utterance(CHARACTER if label in names else label, speech, no))
    return out


def _starts_with(clause: str, words) -> str | None:
    stripped = clause.strip()
    changed = True
    while changed:  # drop any run of lead-in words: 却说那呆子 -> 呆子
        changed = False
        for lead in _LEAD_IN:
            if stripped.startswith(lead) and len(stripped) > len(lead):
                stripped, changed = stripped[len(lead):], True
    return next((w for w in words if stripped.startswith(w)), None)


def _speaker(before: str, aliases: list[str], others: set[str], previous: str | None) -> str | None:
    """Who says a quote, from the narration before it; None if that is not a speech clause."""
    sentence = _SENTENCE_END.split(before)[-1]
    if not _SPEECH_VERB.search(sentence):
        return None
    clauses = [c for c in re.split(r"[，,、]", sentence) if c.strip()]
    if len(clauses) == 1 and _CONTINUATION.match(clauses[0].strip()) and previous:
        return previous  # 又道：“…” continues whoever spoke last
    for clause in reversed(clauses):
        if previous and _starts_with(clause, ("他", "她")):
            return previous  # 他扛了钉耙，一路念道: the pronoun points at the last speaker
        if _starts_with(clause, aliases):
            return CHARACTER
        other = _starts_with(clause, sorted(others, key=len, reverse=True))
        if other:
            return other
        if any(a in clause for a in aliases):
            return "\0other"  # 行者笑八戒道: the character is the object, someone else speaks
    return "\0other"


def parse_novel(text: str, aliases: list[str]) -> list[Utterance | None]:
    """Quoted speech of novel prose, each attributed from the clause before it; None = chapter break."""
    aliases = sorted(aliases, key=len, reverse=True)
    # Names of other speakers, learnt from plain `行者道` / `三藏笑道` clauses that open a sentence. After a
    # comma the subject named earlier goes on, and the words before 道 say how: 八戒也不回头，懒懒的道.
    others = {m.group(1) for s in re.split(r"[“”「」。！？\n]", text)
              if (m := _NAMED_VERB.match(re.split(r"[，,]", s)[0].strip()))
              and not _starts_with(m.group(1), aliases) and not set(m.group(1)) & _NOT_IN_NAMES}
    out: list[Utterance | None] = []
    previous: str | None = None
    for no, raw in enumerate(text.splitlines(), 1):
        if _HEADING.match(raw):
            out.append(None)
            previous = None
            continue
        position = 0
        quotes = list(_QUOTE.finditer(raw))
        held: Utterance | None = None  # the first half of a split quote, “师父，”八戒道，“走罢。”
        for i, m in enumerate(quotes):
            before = raw[position:m.start()]
            after = raw[m.end():quotes[i + 1].start() if i + 1 < len(quotes) else len(raw)]
            position = m.end()
            speech = clean_line(m.group("a") if m.group("a") is not None else m.group("b"))
            speaker = _speaker(before, aliases, others, previous)
            tag = _TAG_AFTER.match(after) if speaker is None else None
            if tag:
                speaker = _speaker(tag["clause"], aliases, others, previous)
            # Context for a line that opens a chapter: the narration before it, less any verb clause.
            narration = clean_line(before if tag else re.sub(r"[，,]?[^，,。！？]*[，,]?$", "", before.strip()))
            if speaker is None or not speech:
                continue
            if narration:
                out.append(Utterance(NARRATION, narration, no))
            if held and held.speaker == speaker:
                speech = held.text + speech
            elif held:
                out.append(held)
            held = None
            previous = speaker
            if tag and tag["end"] in "，," and not after[tag.end():].strip() and i + 1 < len(quotes):
                held = Utterance(speaker, speech, no)  # its second half is the next quote
                continue
            out.append(Utterance(speaker, speech, no))
        if held:
            out.append(held)
    return out


def pair_lines(utterances: list[Utterance | None]) -> list[Line]:
    """One Line per run of the character's utterances; user = nearest earlier utterance of someone else."""
    lines: list[Line] = []
    heard: str | None = None  # last thing someone else said in this scene
    context: str | None = None  # last stage direction / narration in this scene
    last: Utterance | None = None  # the utterance just before (None after a scene break)
    for u in utterances:
        if u is None:
            heard = context = None
        elif u.speaker == NARRATION:
            context = u.text
        elif u.speaker == CHARACTER and last is not None and last.speaker == CHARACTER:
            # Two lines in a row (又道：…, two `角色：` lines) answer the same turn: one reply, not two
            # samples that teach two answers to one question.
            lines[-1] = Line(lines[-1].user, lines[-1].text + u.text, lines[-1].line)
        elif u.speaker == CHARACTER:
            lines.append(Line(heard or context, u.text, u.line))
        else:
            heard = u.text
        last = u
    return lines


def read_source(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise KitError(f"source not found: {path}", "check the path") from None
    except IsADirectoryError:
        raise KitError(f"source {path} is a folder", "name one text file, e.g. sources/script.txt") from None
    except UnicodeDecodeError as e:
        line = Path(path).read_bytes()[:e.start].count(b"\n") + 1
        raise KitError(f"{path}:{line}: not UTF-8 text",
                       "convert it, e.g. `iconv -f GB18030 -t UTF-8 IN > OUT`") from None


def extract_lines(text: str, names: list[str], fmt: str = "auto") -> tuple[list[Line], str]:
    """The character's lines in `text` (names = display name + aliases) and the format used."""
    if fmt == "auto":
        fmt = detect_format(text)
    if fmt == "script":
        utterances = parse_script(text, set(names))
    elif fmt == "novel":
        utterances = parse_novel(text, list(names))
    else:
        raise KitError(f"unknown format '{fmt}'", "use --format script, novel or auto")
    return pair_lines(utterances), fmt
