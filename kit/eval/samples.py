"""The eval inputs: held-out `messages` JSONL and the general-ability sanity set shipped with kit."""

from dataclasses import dataclass
from pathlib import Path

from kit.data.samples import read_jsonl
from kit.errors import KitError

GENERAL_SET = Path(__file__).with_name("general_sanity.jsonl")


@dataclass(frozen=True)
class Sample:
    """One held-out conversation; the final assistant turn is the character's line to score."""

    messages: list[dict]

    @property
    def context(self) -> list[dict]:
        return self.messages[:-1]

    @property
    def reply(self) -> str:
        return self.messages[-1]["content"]


@dataclass(frozen=True)
class GeneralItem:
    prompt: str
    expect: list[str]  # any of these substrings (case-insensitive) counts as correct


def load_samples(path: Path) -> list[Sample]:
    path = Path(path)
    if not path.is_file():
        raise KitError(f"eval file not found: {path}",
                       "build it with `kit data build CHARACTER` or pass --eval-file")
    samples = []
    for n, row in read_jsonl(path):
        where = f"{path}:{n}"
        msgs = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(msgs, list) or len(msgs) < 2:
            raise KitError(f"{where}: expected {{\"messages\": [...]}} with at least two turns",
                           "write OpenAI chat form: system/user/assistant turns")
        for i, m in enumerate(msgs):
            if not (isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
                    and isinstance(m.get("content"), str) and m["content"].strip()):
                raise KitError(f"{where}: messages[{i}] needs role system/user/assistant and non-empty "
                               "content", "fix or drop that turn")
        if msgs[-1]["role"] != "assistant":
            raise KitError(f"{where}: the last turn must be the character's (assistant) line",
                           "end each conversation with the held-out assistant reply")
        samples.append(Sample(msgs))
    if not samples:
        raise KitError(f"{path}: no conversations", "the eval split is empty: rebuild the data")
    return samples


def load_general_set(path: Path = GENERAL_SET) -> list[GeneralItem]:
    items = []
    for n, row in read_jsonl(path):
        if not (isinstance(row.get("prompt"), str) and isinstance(row.get("expect"), list) and row["expect"]):
            raise KitError(f"{path}:{n}: needs \"prompt\" (text) and \"expect\" (list of substrings)")
        items.append(GeneralItem(row["prompt"], [str(e) for e in row["expect"]]))
    return items
