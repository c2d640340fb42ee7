"""Turn a model's answer into (user, assistant) turns, tolerating the usual ways JSON comes back."""

import json
import re

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
USER_ROLES = {"user", "human", "用户", "提问者", "q", "question", "问"}
ASSISTANT_ROLES = {"assistant", "ai", "bot", "character", "a", "answer", "答", "gpt"}


def _load(text: str):
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        raise ValueError("no JSON object in the answer")
    start = min(starts)
    end = max(text.rfind("}"), text.rfind("]")) + 1
    body = text[start:end]
    for candidate in (body, _TRAILING_COMMA.sub(r"\1", body)):
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    raise ValueError("the answer is not valid JSON")


def _turn_list(data) -> list:
    if isinstance(data, dict):
        for key in ("dialogue", "messages", "conversation", "dialog", "对话"):
            if isinstance(data.get(key), list):
                return data[key]
        raise ValueError("no 'dialogue' list in the JSON")
    if isinstance(data, list):
        return data
    raise ValueError("the JSON is neither a list nor an object")


def parse_dialogue(text: str, names: set[str]) -> list[tuple[str, str]]:
    """(user, assistant) pairs; raises ValueError saying why the answer cannot be used."""
    flat: list[tuple[str, str]] = []  # (role, content)
    for turn in _turn_list(_load(text or "")):
        if not isinstance(turn, dict):
            raise ValueError("a turn is not a JSON object")
        if "role" in turn or "speaker" in turn:
            who = str(turn.get("role", turn.get("speaker", ""))).strip()
            content = turn.get("content", turn.get("text", ""))
            role = "user" if who.lower() in USER_ROLES else (
                "assistant" if who.lower() in ASSISTANT_ROLES or who in names else None)
            if role is None:
                raise ValueError(f"unknown speaker {who!r}")
            flat.append((role, str(content).strip()))
        else:  # {"user": "...", "assistant": "..."} pairs
            for role, keys in (("user", USER_ROLES), ("assistant", ASSISTANT_ROLES | names)):
                value = next((turn[k] for k in turn if k.lower() in keys or k in keys), None)
                if value is not None:
                    flat.append((role, str(value).strip()))
    merged: list[list[str]] = []
    for role, content in flat:
        if not content:
            continue
        if merged and merged[-1][0] == role:
            merged[-1][1] += content
        else:
            merged.append([role, content])
    while merged and merged[0][0] != "user":
        merged.pop(0)
    if merged and merged[-1][0] != "assistant":
        merged.pop()
    pairs = [(u[1], a[1]) for u, a in zip(merged[::2], merged[1::2])]
    if not pairs:
        raise ValueError("no user/assistant exchange in the JSON")
    return pairs
