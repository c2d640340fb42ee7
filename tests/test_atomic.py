"""kit.atomic: what a killed writer leaves is cleaned by the next one, never a live writer's; a
folder kit did not write, or one a command reads, is not replaced."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from kit import atomic
from kit.errors import KitError

# A writer that stages 1 MiB, says so, and waits to be killed in the middle of its write.
WRITER = ("import sys, time\n"
          "from pathlib import Path\n"
          "from kit import atomic\n"
          "with atomic.staged_dir(Path(sys.argv[1])) as stage:\n"
          "    (stage / 'weights').write_bytes(bytes(2**20))\n"
          "    print('staged', flush=True)\n"
          "    time.sleep(600)\n")


def _start_writer(final):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(final)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "staged"
    return writer


def _stages(final):
    return sorted(p.name for p in final.parent.glob(f".{final.name}.partial-*"))


def test_a_killed_writers_stage_is_cleaned_and_a_live_ones_kept(tmp_path):
    final = tmp_path / "merged"
    live, killed = _start_writer(final), _start_writer(final)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert len(_stages(final)) == 2
        assert atomic.clean_stale(final) == 2**20  # the killed one's MiB, not the live one's
        [kept] = _stages(final)
        assert f"-{live.pid}-" in kept and socket.gethostname() in kept
        with atomic.staged_dir(final) as stage:  # the next writer cleans too, and keeps the live one
            (stage / "weights").write_bytes(b"new")
        assert _stages(final) == [kept] and (final / "weights").read_bytes() == b"new"
    finally:
        live.kill()
        live.wait()
    assert atomic.clean_stale(final) == 2**20 and _stages(final) == []


def test_an_unnamed_stage_of_an_older_kit_is_cleaned_only_when_old(tmp_path):
    final = tmp_path / "base-123"
    recent, old = tmp_path / ".base-123.partial-sfkno65x", tmp_path / ".base-123.partial-a1b2c3d4"
    for stage in (recent, old):
        stage.mkdir()
        (stage / "weights").write_bytes(bytes(100))
    day_ago = time.time() - atomic.UNNAMED_STAGE_AGE_S - 60
    os.utime(old, (day_ago, day_ago))
    assert atomic.clean_stale(final) == 100
    assert recent.is_dir() and not old.exists()


def test_a_swap_cut_between_its_renames(tmp_path):
    final, old = tmp_path / "merged", tmp_path / ".merged.old"
    old.mkdir()
    (old / "config.json").write_text("{}")
    atomic.clean_stale(final)  # final is missing: .old is the last good copy, put it back
    assert (final / "config.json").is_file() and not old.exists()
    old.mkdir()
    (old / "config.json").write_text("{}")
    assert atomic.clean_stale(final) == 2 and not old.exists()  # final is there: .old is a leftover


def test_check_target_keeps_what_kit_did_not_write(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(KitError, match=r"--out .*mine is not empty and has no kit_merge.json") as e:
        atomic.check_target(user, record="kit_merge.json", force=False, option="--out")
    assert "--force" in e.value.fix
    atomic.check_target(user, record="kit_merge.json", force=True, option="--out")
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "kit_merge.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    for ok in ("ours", "empty", "new"):
        atomic.check_target(tmp_path / ok, record="kit_merge.json", force=False, option="--out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(KitError, match="is a file"):
        atomic.check_target(tmp_path / "file", record="kit_merge.json", force=True, option="--out")


def test_check_target_never_replaces_an_input_nor_a_folder_holding_one(tmp_path):
    run = tmp_path / "work" / "bajie"
    (run / "iter_4.pth").parent.mkdir(parents=True)
    (run / "iter_4.pth").write_bytes(b"checkpoint")
    for target in (run, tmp_path / "work", tmp_path):
        with pytest.raises(KitError, match=r"is or holds .*bajie: replacing it would delete it"):
            atomic.check_target(target, record="kit_merge.json", force=True, option="--out",
                                protected=[run])
