"""Training samples in OpenAI `messages` form, and reading/writing them as JSONL."""

import json
from pathlib import Path

from kit import atomic
from kit.errors import KitError


def chat(system: str, turns: list[tuple[str, str]]) -> dict:
    """A sample: the persona system prompt, then (user, assistant) turns."""
    messages = [{"role": "system", "content": system}]
    for user, assistant in turns:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return {"messages": messages}


def replies(sample: dict) -> str:
    """All assistant turns of a sample, one per line: what dedup and the filters look at."""
    return "\n".join(m["content"] for m in sample["messages"] if m["role"] == "assistant")


def turns_of(sample: dict) -> list[tuple[str, str]]:
    """(user, assistant) pairs of a well-formed sample, system message dropped."""
    rest = [m for m in sample["messages"] if m["role"] != "system"]
    return [(u["content"], a["content"]) for u, a in zip(rest[::2], rest[1::2])]


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a bad line raises KitError naming it."""
    path = Path(path)
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KitError(f"file not found: {path}", "check the path") from None
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise KitError(f"{path}:{line}: not UTF-8 text", "save the file as UTF-8") from None
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((no, json.loads(line)))
        except json.JSONDecodeError as e:
            raise KitError(f"{path}:{no}: not valid JSON ({e.msg} at column {e.colno})",
                           f"run `kit data check {path}` to see every problem") from None
    return rows


def dumps(sample: dict) -> str:
    return json.dumps(sample, ensure_ascii=False)


def write_jsonl(path: Path, samples: list[dict]) -> None:
    atomic.write_text(path, "".join(dumps(s) + "\n" for s in samples))
