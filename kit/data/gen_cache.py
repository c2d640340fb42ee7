"""The generation cache: one JSON line per finished API call, appended and flushed at once.

Each line reaches the OS before the answer is used, so a crash, kill -9 or Ctrl-C loses no finished
call; `sync()` (group commit, see generate.py) makes them survive a power cut or OS crash as well.
A crash can tear at most the line being written; loading cuts that torn tail off, so a re-run finds
every finished call and sends none of them again.
"""

import json
import os
from pathlib import Path


class RequestCache:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.entries: dict[str, dict] = {}
        self.torn = 0  # lines lost to a crash mid-write (at most the last one)
        self._tokens = [0, 0]  # running (prompt, completion) totals: asked after every call
        self._unsynced = False  # lines added since the last fsync
        self._load()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a line cut off mid-write: drop it so the next append starts clean
            self.torn += 1
            with open(self.path, "rb+") as f:
                f.truncate(end)
        for line in data[:end].decode("utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
                self._remember(entry)
            except (json.JSONDecodeError, KeyError, TypeError):
                self.torn += 1

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def get(self, key: str) -> dict:
        return self.entries[key]

    def _remember(self, entry: dict) -> None:
        old = self.entries.get(entry["key"])
        for sign, e in ((-1, old), (1, entry)):
            usage = (e or {}).get("usage") or {}
            self._tokens[0] += sign * usage.get("prompt_tokens", 0)
            self._tokens[1] += sign * usage.get("completion_tokens", 0)
        self.entries[entry["key"]] = entry

    def add(self, entry: dict) -> None:
        """Append the entry and hand it to the OS: it survives the process dying from here on."""
        self._remember(entry)
        self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._file.flush()
        self._unsynced = True

    def sync(self) -> None:
        """fsync what was added: it survives a power cut or OS crash too. Safe from another thread."""
        if self._unsynced:
            self._unsynced = False  # cleared first: an add() during the fsync keeps it set
            os.fsync(self._file.fileno())

    def tokens(self) -> tuple[int, int]:
        """(prompt, completion) tokens of every call recorded here."""
        return self._tokens[0], self._tokens[1]

    def close(self) -> None:
        self.sync()
        self._file.close()
