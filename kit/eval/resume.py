"""Finished scores kept under OUT/scores/, so a stopped `kit eval` resumes where it stopped.

Scoring many checkpoints takes long on a big model, and an LLM judge is paid per call: a re-run with
the same inputs loads nothing and asks nothing for the models already scored. A score is reused only
while everything it depends on is unchanged: the model's files (size and modification time), the
persona, eval and general-set files, the settings, the judge and kit's version. A served model (URL)
can change behind its address, so it is always scored again.
"""

import hashlib
import json
from pathlib import Path

from kit import atomic
from kit.eval.backends import is_url


def _files_digest(path: Path) -> str:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        stat = f.stat()
        h.update(f"{f.relative_to(path) if f != path else f.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()


def content_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class ScoreStore:
    def __init__(self, folder: Path, inputs: dict):
        self.folder, self.inputs = Path(folder), inputs

    def key(self, label: str, sources: list) -> str | None:
        """None when a source is a URL (never reused)."""
        if any(is_url(s) for s in sources):
            return None
        models = [[str(Path(s).resolve()), _files_digest(Path(s))] for s in sources]
        text = json.dumps({"label": label, "models": models, **self.inputs}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def path(self, label: str) -> Path:
        return self.folder / f"{label}.json"

    def get(self, label: str, key: str | None) -> dict | None:
        if key is None or not self.path(label).is_file():
            return None
        try:
            saved = json.loads(self.path(label).read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None  # damaged by hand: score again
        return saved["score"] if saved.get("key") == key else None

    def put(self, label: str, key: str | None, score: dict) -> None:
        if key is not None:
            atomic.write_text(self.path(label), json.dumps({"key": key, "score": score}, ensure_ascii=False))
