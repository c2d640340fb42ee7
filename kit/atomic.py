"""Atomic writes: a reader sees the old file/folder or the new one, never half of one."""

import glob
import os
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from kit.errors import KitError

# A scratch folder without host and pid in its name was made by an older kit: its writer cannot be
# asked, so only one this old (no merge, build or quantization runs this long) counts as abandoned.
UNNAMED_STAGE_AGE_S = 24 * 3600


def _umask_mode(mode: int) -> int:
    """mkstemp/mkdtemp create owner-only entries; results get the usual umask permissions instead."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, _umask_mode(0o666))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _stage_prefix(final: Path) -> str:
    return f".{final.name}.partial-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _abandoned(stage: Path, prefix: str) -> bool:
    """A scratch folder whose writer is gone: named by this host and a dead pid, or old and unnamed."""
    # mkdtemp's random suffix has no "-": the host (which may) is everything before "-PID-".
    named = re.fullmatch(r"(?P<host>.+)-(?P<pid>\d+)-[^-]+", stage.name[len(prefix):])
    if named is None:
        try:
            return time.time() - stage.stat().st_mtime > UNNAMED_STAGE_AGE_S
        except FileNotFoundError:  # its writer just swapped it in
            return False
    # Another host's pid means nothing here (a shared disk): leave its folder to that host.
    return named["host"] == socket.gethostname() and not _process_alive(int(named["pid"]))


def _size(path: Path) -> int:
    return sum(os.lstat(os.path.join(folder, name)).st_size
               for folder, _, names in os.walk(path) for name in names)


def clean_stale(final: Path) -> int:
    """Remove what killed writers of `final` left beside it; return the bytes freed.

    A `.NAME.partial-*` scratch folder whose writer is gone, and a `.NAME.old` left by a swap cut
    between its two renames: put back if `final` is missing (it is the last good copy), else removed.
    """
    final = Path(final)
    if not final.parent.is_dir():
        return 0
    freed = 0
    prefix = _stage_prefix(final)
    for stage in final.parent.glob(f"{glob.escape(prefix)}*"):
        if stage.is_dir() and _abandoned(stage, prefix):
            freed += _size(stage)
            shutil.rmtree(stage, ignore_errors=True)
    old = final.with_name(f".{final.name}.old")
    if old.is_dir() and not final.exists():
        os.replace(old, final)
    elif old.is_dir():
        freed += _size(old)
        shutil.rmtree(old, ignore_errors=True)
    return freed


def check_target(final: Path, *, record: str, force: bool, option: str,
                 protected: Iterable[Path] = ()) -> None:
    """Refuse to replace a folder that is not an artifact kit wrote (it holds `record`), unless
    `force`; never one that is, or holds, a `protected` path (the inputs), not even with `force`."""
    final = Path(final).resolve()
    for source in protected:
        source = Path(source).resolve()
        if final == source or final in source.parents:
            raise KitError(f"{option} {final} is or holds {source}: replacing it would delete it",
                           f"pass {option} another folder: a new one, or one kit wrote")
    if final.exists() and not final.is_dir():
        raise KitError(f"{option} {final} is a file", f"pass {option} a folder (new or kit's own)")
    if not final.is_dir() or (final / record).is_file() or not any(final.iterdir()) or force:
        return
    raise KitError(f"{option} {final} is not empty and has no {record}, so kit did not write it: "
                   "replacing it would delete what it holds",
                   f"pass {option} a new or empty folder, or add --force to replace it")


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield a scratch folder beside `final`; on success it replaces `final`, on error it is removed.

    Its name holds this host and pid, so a later writer can tell an abandoned one from a live one.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(final)
    prefix = f"{_stage_prefix(final)}{socket.gethostname()}-{os.getpid()}-"
    stage = Path(tempfile.mkdtemp(dir=final.parent, prefix=prefix))
    stage.chmod(_umask_mode(0o777))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(stage, final)
    shutil.rmtree(old, ignore_errors=True)
