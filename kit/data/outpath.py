"""Where `kit data extract|generate` may write: a file, and never one of the files the run reads."""

import os
from pathlib import Path

from kit.errors import KitError


def _same_file(a: Path, b: Path) -> bool:
    """The same file by any name: symlinks resolved, hard links compared by inode."""
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


def check_output(path: Path, flag: str, inputs: dict[str, Path | None], example: str) -> None:
    """Refuse, before any work, an output path that is a folder or one of `inputs` (what -> path)."""
    path = Path(path)
    if path.is_dir():
        raise KitError(f"{flag} {path}: is a folder, not a file",
                       f"name a file, e.g. {flag} {path / example}")
    for what, source in inputs.items():
        if source is not None and _same_file(path, Path(source)):
            raise KitError(f"{flag} {path} is the {what} ({source}): writing it would destroy it",
                           f"give {flag} another file")
