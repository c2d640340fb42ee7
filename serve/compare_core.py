"""The compare page's logic, apart from Streamlit so it is unit-testable: history truncation, both
answers streamed at once, blind A/B votes in SQLite, conversation export."""

import json
import queue
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import openai

from kit.errors import KitError

VOTES_FILE = "compare_votes.sqlite"
CountTokens = Callable[[list[dict]], int]


@dataclass(frozen=True)
class Endpoint:
    name: str  # model name the server answers to ("base", "tuned")
    url: str  # OpenAI base URL (…/v1)
    context: int = 2048


def history_for(turns: list[dict], name: str) -> list[dict]:
    """One side's own conversation: each past prompt and *that side's* answer."""
    out = []
    for t in turns:
        answer = t["answers"].get(name)
        if answer:  # a failed or empty answer is left out, with its prompt
            out += [{"role": "user", "content": t["prompt"]}, {"role": "assistant", "content": answer}]
    return out


def fit_context(system: str, history: list[dict], prompt: str, max_tokens: int, context: int,
                count: CountTokens) -> list[dict]:
    """system + the newest whole turns that fit + prompt, leaving max_tokens for the answer."""
    head = [{"role": "system", "content": system}] if system.strip() else []
    tail = [{"role": "user", "content": prompt}]
    kept = list(history)
    while kept and count(head + kept + tail) + max_tokens > context:
        kept = kept[2:]  # drop the oldest user/assistant pair
    return head + kept + tail


def stream_all(client_for: Callable[[Endpoint], openai.OpenAI], requests: dict[Endpoint, list[dict]],
               params: dict, sides: dict[str, str] | None = None) -> Iterator[tuple[str, str, str | None]]:
    """Stream every side at once; yield (name, text so far, error) whenever one side changes, and a
    last (name, text, error) per side when it is done. `sides` (blind mode) maps a model name to the
    letter its errors are told by, so that they do not give the model away before the vote."""
    q: queue.Queue = queue.Queue()
    sides = sides or {}

    def worker(ep: Endpoint, messages: list[dict]):
        text, error = "", None
        try:
            stream = client_for(ep).chat.completions.create(model=ep.name, messages=messages, stream=True,
                                                            **params)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
                    q.put((ep.name, text, None, False))
        except openai.APIError as e:
            error = describe_error(ep, e, sides)
        finally:
            q.put((ep.name, text, error, True))

    for ep, messages in requests.items():
        threading.Thread(target=worker, args=(ep, messages), daemon=True).start()
    running = len(requests)
    while running:
        name, text, error, done = q.get()
        running -= done
        yield name, text, error


def describe_error(ep: Endpoint, e: openai.APIError, sides: dict[str, str] | None = None) -> str:
    """What failed, for the page; in blind mode (`sides`: model name -> "A"/"B") no model name or URL
    appears, only the side's letter."""
    who, where = (f"side {sides[ep.name]}", "") if sides else (f"'{ep.name}'", f" at {ep.url}")
    if isinstance(e, openai.APIConnectionError):
        return f"cannot reach the {who} server{where} — is `kit serve` still running?"
    status = getattr(e, "status_code", None)
    body = getattr(e, "body", None)
    message = body.get("message") if isinstance(body, dict) and body.get("message") else str(e)
    if sides:  # the server's own message may name models ("model 'tuned' not found; served: base, …")
        message = message.replace(ep.url, "its URL")
        for name, letter in sides.items():
            message = re.sub(rf"\b{re.escape(name)}\b", f"side {letter}", message)
    return f"{who} server error{f' {status}' if status else ''}: {message}"


def can_vote(turn: dict) -> bool:
    """A blind turn takes its vote once both sides are done, whatever they answered: an empty or failed
    side is exactly what "both bad" is for."""
    return turn["blind"] and not turn.get("vote") and all(n in turn["answers"] for n in turn["order"])


def side_label(turn: dict, i: int) -> str:
    """How side i is named: its model, or only "A"/"B" while a blind turn waits for its vote."""
    name = turn["order"][i]
    if turn["blind"] and not turn.get("vote"):
        return "AB"[i]
    return f"{'AB'[i]} = {name}" if turn["blind"] else name


def shown(turn: dict) -> dict:
    """The turn as the user may see it: until its vote, a blind turn's sides are keyed A and B and its
    shuffled order (which model is which letter) is left out."""
    if not (turn["blind"] and not turn.get("vote")):
        return turn
    letter = dict(zip(turn["order"], "AB"))
    return {"prompt": turn["prompt"], "blind": True, "order": ["A", "B"],
            "answers": {letter[n]: turn["answers"][n] for n in turn["order"] if n in turn["answers"]},
            "errors": {letter[n]: turn["errors"][n] for n in turn["order"] if n in turn.get("errors", {})},
            "vote": None}


def default_votes_path(paths: dict[str, str]) -> Path:
    """Votes live beside the workdir, so each run keeps its own: the tuned model's parent (DIR for
    DIR/merged), else the current directory (models given only by URL)."""
    tuned = paths.get("tuned")
    return (Path(tuned).resolve().parent if tuned else Path.cwd()) / VOTES_FILE


def model_identities(endpoints: list[Endpoint], paths: dict[str, str]) -> dict[str, str]:
    """What each side is, for the vote record: its model folder when the page knows it, else name@URL."""
    return {e.name: str(Path(paths[e.name]).resolve()) if e.name in paths else f"{e.name}@{e.url}"
            for e in endpoints}


def vote_row(turn: dict, winner: str, settings: dict) -> dict:
    """One vote, ready to store. winner: a model name, "tie" or "both_bad"."""
    left, right = turn["order"]
    return {"ts": time.time(), "prompt": turn["prompt"], "left_model": left, "right_model": right,
            "winner": winner, "left_answer": turn["answers"].get(left, ""),
            "right_answer": turn["answers"].get(right, ""),
            "settings": json.dumps(settings, ensure_ascii=False)}


class VoteStoreError(KitError):
    pass


# Columns added after the first release; rows from before hold NULL there (character and models unknown).
IDENTITY_COLUMNS = ("character", "left_source", "right_source", "tuned_source")


class VoteStore:
    """Blind A/B votes of one character between two models: who was preferred, with the answers
    compared. Each row names the character and each side's model, so one file can hold many runs."""

    def __init__(self, path: Path, character: str, sources: dict[str, str]):
        self.path = Path(path)
        self.character = character
        self.sources = sources  # model name -> identity (model_identities)

    @staticmethod
    def _ensure_schema(db: sqlite3.Connection) -> None:
        db.execute("""CREATE TABLE IF NOT EXISTS votes (
            id INTEGER PRIMARY KEY, ts REAL, prompt TEXT, left_model TEXT, right_model TEXT,
            winner TEXT, left_answer TEXT, right_answer TEXT, settings TEXT)""")
        have = {row[1] for row in db.execute("PRAGMA table_info(votes)")}
        for column in IDENTITY_COLUMNS:
            if column not in have:
                db.execute(f"ALTER TABLE votes ADD COLUMN {column} TEXT")

    def _run(self, work: Callable[[sqlite3.Connection], object]):
        """One transaction; any SQLite or file failure becomes an error that names the file and the fix.
        The lock wait is short: a vote that cannot be written stays queued in the page instead of
        freezing it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=0.5)
        except (sqlite3.Error, OSError) as e:
            raise self._problem(e) from e
        try:
            with db:
                self._ensure_schema(db)
                return work(db)
        except sqlite3.Error as e:
            raise self._problem(e) from e
        finally:
            db.close()

    def _problem(self, e: Exception) -> VoteStoreError:
        if "locked" in str(e) or "busy" in str(e):
            return VoteStoreError(f"{self.path}: the vote database is locked ({e})",
                                  "close the program that holds it open (e.g. an sqlite3 shell)")
        if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError):
            return VoteStoreError(f"{self.path}: not a readable SQLite vote database ({e})",
                                  f"move it aside (mv {self.path} {self.path}.broken); a fresh one is made")
        return VoteStoreError(f"{self.path}: cannot open the vote database ({e})",
                              "make its folder writable, or start the page with --votes FILE")

    def record(self, vote: dict) -> None:
        row = {**vote, "character": self.character, "left_source": self.sources.get(vote["left_model"]),
               "right_source": self.sources.get(vote["right_model"]),
               "tuned_source": self.sources.get("tuned")}
        self._run(lambda db: db.execute(
            f"INSERT INTO votes ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())))

    def save(self, pending: list[dict]) -> None:
        """Store queued votes oldest first, each taken off the queue once written; on a failure the rest
        stay queued for the next try and VoteStoreError says why."""
        while pending:
            self.record(pending[0])
            pending.pop(0)

    def tally(self) -> dict[str, int]:
        """This character's votes between these two models, by winner (a model name, tie, both_bad)."""
        if len(self.sources) != 2:  # one model alone (kit serve --tuned only) takes no A/B votes
            return {}
        ids = list(self.sources.values())
        rows = self._run(lambda db: db.execute(
            "SELECT CASE winner WHEN left_model THEN left_source WHEN right_model THEN right_source "
            "ELSE winner END, COUNT(*) FROM votes WHERE character = ? AND left_source IN (?, ?) "
            "AND right_source IN (?, ?) AND left_source != right_source GROUP BY 1",
            [self.character, *ids, *ids]).fetchall())
        name_of = {source: name for name, source in self.sources.items()}
        return {name_of.get(winner, winner): n for winner, n in rows}


def win_rate(tally: dict[str, int], model: str) -> float | None:
    """Share of decided votes (ties and both-bad count half) won by `model`."""
    total = sum(tally.values())
    if not total:
        return None
    return (tally.get(model, 0) + 0.5 * (tally.get("tie", 0) + tally.get("both_bad", 0))) / total


def export_json(turns: list[dict], settings: dict) -> str:
    turns = [shown(t) for t in turns]
    return json.dumps({"settings": settings, "turns": turns}, ensure_ascii=False, indent=2)


def export_markdown(turns: list[dict], settings: dict) -> str:
    lines = ["# kit compare", "", f"system prompt: {settings.get('system', '')}", ""]
    for i, t in enumerate(map(shown, turns), 1):
        lines += [f"## Turn {i}", "", f"**user:** {t['prompt']}", ""]
        for j, name in enumerate(t["order"]):
            lines += [f"**{side_label(t, j)}:** {t['answers'].get(name, '')}", ""]
        if t.get("errors"):
            lines += [f"_error ({n}): {e}_" for n, e in t["errors"].items()] + [""]
        if t.get("vote"):
            lines += [f"vote: {t['vote']}", ""]
    return "\n".join(lines)
