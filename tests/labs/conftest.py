import json
import sys
from pathlib import Path

import pytest

# pytest's importlib mode puts only tests/ on sys.path; the walk's helpers live beside this file.
sys.path.insert(0, str(Path(__file__).parent))

TIMES = pytest.StashKey[tuple]()


@pytest.fixture(scope="session")
def course(tmp_path_factory, pytestconfig):
    """The course walked on CPU from its guides, lab by lab as tests ask for them (tests/labs/course_walk.py)."""
    import wukong
    from course_walk import Course

    from kit_testing import ROOT

    home = tmp_path_factory.mktemp("course")
    walk = Course(ROOT, home, wukong.own_files(home / "mine"))
    yield walk
    walk.close()
    times = [{"lab": w.n, "seconds": round(w.seconds, 1), "finished": not w.error,
              "commands": [{"typed": r.typed, "seconds": round(r.seconds, 1), "skipped": r.skipped}
                           for r in w.results]} for w in walk.walks]
    (home / "times.json").write_text(json.dumps(times, ensure_ascii=False, indent=1), encoding="utf-8")
    pytestconfig.stash[TIMES] = times, home / "times.json"


def pytest_terminal_summary(terminalreporter, config):
    times, path = config.stash.get(TIMES, ([], None))
    if times:
        terminalreporter.section("the course walked on CPU: wall time per lab")
        for lab in times:
            ran = sum(1 for c in lab["commands"] if not c["skipped"])
            terminalreporter.write_line(f"lab {lab['lab']}  {lab['seconds']:7.1f} s  {ran} commands run, "
                                        f"{len(lab['commands']) - ran} skipped" + ("" if lab["finished"] else "  (stopped)"))
        terminalreporter.write_line(f"total  {sum(lab['seconds'] for lab in times):7.1f} s  (each command's: {path})")
