"""The generation cache: one JSON line per finished API call, appended and fsynced at once.

A crash or Ctrl-C can tear at most the line being written; loading cuts that torn tail off, so a
re-run finds every finished call and sends none of them again.
"""

import json
import os
from pathlib import Path


class RequestCache:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.entries: dict[str, dict] = {}
        self.torn = 0  # lines lost to a crash mid-write (at most the last one)
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
                self.entries[entry["key"]] = entry
            except (json.JSONDecodeError, KeyError, TypeError):
                self.torn += 1

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def get(self, key: str) -> dict:
        return self.entries[key]

    def add(self, entry: dict) -> None:
        self.entries[entry["key"]] = entry
        self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def tokens(self) -> tuple[int, int]:
        """(prompt, completion) tokens of every call recorded here."""
        usage = [e.get("usage") or {} for e in self.entries.values()]
        return (sum(u.get("prompt_tokens", 0) for u in usage),
                sum(u.get("completion_tokens", 0) for u in usage))

    def close(self) -> None:
        self._file.close()
