"""The course walked as a participant walks it: labs 0-7 on CPU, every command copied from the guides and
run as shown, every expected output the guides show matched. tests/labs/course_walk.py says how a guide
marks the lines a CPU walk cannot run (and the walk skips exactly those); the wall time of each lab is
printed at the end of the session and kept in the walk's times.json."""

import pytest
from course_walk import SKIPPED, course_commands, guide_commands, sections, transcripts, unmatched

from kit.labs.catalog import load_labs

LABS = load_labs()


def guide(n: int) -> str:
    return LABS[n].path.read_text(encoding="utf-8")


@pytest.mark.timeout(3600)  # a lab asked for alone walks every lab before it first
@pytest.mark.parametrize("n", [lab.n for lab in LABS], ids=lambda n: f"lab{n}")
def test_lab_walked_from_its_guide_prints_what_it_shows(course, n):
    walk = course.walk(n)
    assert walk.error is None, f"lab {n}: {walk.error}"
    assert [r.command for r in walk.results] == course_commands(guide(n))
    for result in walk.results:
        assert result.skipped or result.rc == 0, result.typed
    for transcript in walk.transcripts:
        result = walk.result(transcript.command)
        missing = unmatched(transcript.lines, result.output)
        assert missing is None, (f"lab {n}: `{transcript.command}` printed no line like\n  {missing}\n"
                                 f"after the lines above it in the guide; it printed:\n{result.output[-5000:]}")


@pytest.mark.parametrize("n", [lab.n for lab in LABS], ids=lambda n: f"lab{n}")
def test_english_commands_are_the_chinese_ones_with_the_same_marks(n):
    """The walk types the 中文 section's commands; the English section may show no other."""
    zh, en = (guide_commands(part) for part in sections(guide(n)))
    marks = {c.line: c.tag for c in zh}
    for command in en:
        assert command.line in marks, f"lab {n}: `{command.line}` is only in the English section"
        assert command.tag == marks[command.line], f"lab {n}: `{command.line}` is marked differently in English"


@pytest.mark.parametrize("n", [lab.n for lab in LABS], ids=lambda n: f"lab{n}")
def test_every_expected_output_is_of_a_command_the_walk_runs(n):
    commands = {c.line: c for c in course_commands(guide(n))}
    for transcript in transcripts(guide(n)):
        assert transcript.command in commands, f"lab {n}: `$ {transcript.command}` is no command of the guide"
        assert commands[transcript.command].tag not in SKIPPED, f"lab {n}: a CPU walk skips `{transcript.command}`"


def test_expected_lines_match_whole_lines_in_order_with_wildcards():
    output = "  base   lab/base\n─────── kit serve ───────\nloss 0.568 lr 7.55e-09\nlab passed\n"
    assert unmatched(["base lab/base", "── kit serve ──", "loss … lr 7.55e-09", "lab passed"], output) is None
    assert unmatched(["loss 0.3 lr 7.55e-09"], output) == "loss 0.3 lr 7.55e-09"  # another number
    assert unmatched(["lab passed", "base lab/base"], output) == "base lab/base"  # out of order
    assert unmatched(["lab"], output) == "lab"  # part of a line is not a line
