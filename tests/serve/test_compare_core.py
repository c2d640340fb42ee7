"""The compare page's logic without a browser: what a blind turn lets slip before its vote, votes that
the database refuses, and which votes a page counts."""

import json
import sqlite3
import time
from types import SimpleNamespace

import httpx
import openai
import pytest

from kit.serve import compare_core as core

BASE = core.Endpoint("base", "http://127.0.0.1:23333/v1")
TUNED = core.Endpoint("tuned", "http://127.0.0.1:23334/v1")
SOURCES = {"base": "/w/lab/base", "tuned": "/w/lab/merged"}


def blind_turn(vote=None) -> dict:
    return {"prompt": "你是谁？", "order": ["tuned", "base"], "blind": True, "vote": vote,
            "answers": {"tuned": "俺老猪是也", "base": "我是一个AI助手"},
            "errors": {"base": "side B server error 500: boom"}}


def test_export_names_no_model_before_the_blind_vote_and_all_after():
    settings = {"system": "s", "models": ["base", "tuned"]}
    before = json.loads(core.export_json([blind_turn()], settings))["turns"][0]
    assert before["answers"] == {"A": "俺老猪是也", "B": "我是一个AI助手"}
    assert before["errors"] == {"B": "side B server error 500: boom"}
    assert "tuned" not in json.dumps(before) and "base" not in json.dumps(before)
    markdown = core.export_markdown([blind_turn()], settings)
    assert "**A:** 俺老猪是也" in markdown and "**tuned" not in markdown and "**base" not in markdown

    after = json.loads(core.export_json([blind_turn("tuned")], settings))["turns"][0]
    assert after["order"] == ["tuned", "base"] and after["vote"] == "tuned"
    assert "**A = tuned:** 俺老猪是也" in core.export_markdown([blind_turn("tuned")], settings)


class FakeClient:
    """An OpenAI client whose chat stream is a fixed list of text pieces, or an API error."""

    def __init__(self, pieces=(), error=None):
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))
        self.pieces, self.error = pieces, error

    def create(self, **_):
        if self.error:
            raise self.error
        return [SimpleNamespace(choices=[SimpleNamespace(delta=SimpleNamespace(content=p))]) for p in self.pieces]


def run_turn(clients: dict[str, FakeClient], sides=None) -> dict:
    """Stream like the page does and collect the finished turn."""
    turn = {"prompt": "hi", "order": list(clients), "blind": True, "answers": {}, "errors": {}, "vote": None}
    eps = {"base": BASE, "tuned": TUNED}
    requests = {eps[n]: [{"role": "user", "content": "hi"}] for n in clients}
    for name, text, error in core.stream_all(lambda ep: clients[ep.name], requests, {}, sides):
        turn["answers"][name] = text
        if error:
            turn["errors"][name] = error
    return turn


def test_an_empty_answer_still_takes_a_vote():
    turn = run_turn({"tuned": FakeClient(["俺", "老猪"]), "base": FakeClient([""])})
    assert turn["answers"] == {"tuned": "俺老猪", "base": ""}
    assert core.can_vote(turn)
    assert not core.can_vote({**turn, "vote": "both_bad"})


def test_blind_errors_name_the_side_not_the_model():
    request = httpx.Request("POST", TUNED.url)
    missing = openai.NotFoundError("not found", response=httpx.Response(404, request=request),
                                   body={"message": "model 'tuned' not found; served: base, tuned"})
    turn = run_turn({"tuned": FakeClient(error=missing), "base": FakeClient(error=openai.APIConnectionError(
        request=httpx.Request("POST", BASE.url)))}, sides={"tuned": "A", "base": "B"})
    assert turn["errors"]["tuned"] == "side A server error 404: model 'side A' not found; served: side B, side A"
    assert turn["errors"]["base"].startswith("cannot reach the side B server —")
    for error in turn["errors"].values():
        assert "tuned" not in error and "base" not in error and "2333" not in error
    shown = run_turn({"tuned": FakeClient(error=missing)})["errors"]["tuned"]
    assert shown.startswith("'tuned' server error 404")  # outside blind mode the name helps


def vote(winner="tuned", left="tuned", right="base") -> dict:
    turn = {"prompt": "你是谁？", "order": [left, right], "answers": {"tuned": "俺老猪", "base": "AI"}}
    return core.vote_row(turn, winner, {"temperature": 0.7})


def test_a_corrupt_vote_file_is_an_error_naming_it_and_the_fix(tmp_path):
    path = tmp_path / "compare_votes.sqlite"
    path.write_bytes(b"not a database, just bytes " * 100)
    store = core.VoteStore(path, "bajie", SOURCES)  # opening the page does not fail
    pending = [vote()]
    with pytest.raises(core.VoteStoreError) as e:
        store.save(pending)
    assert str(path) in e.value.message and "move it aside" in e.value.fix and len(pending) == 1
    with pytest.raises(core.VoteStoreError):
        store.tally()
    path.rename(tmp_path / "broken.sqlite")  # the fix: the queued vote lands in a fresh file
    store.save(pending)
    assert pending == [] and store.tally() == {"tuned": 1}


def test_a_locked_vote_file_queues_the_vote_quickly_and_saves_it_later(tmp_path):
    path = tmp_path / "compare_votes.sqlite"
    store = core.VoteStore(path, "bajie", SOURCES)
    store.save([vote()])
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    pending = [vote("base"), vote("tie")]
    started = time.monotonic()
    with pytest.raises(core.VoteStoreError) as e:
        store.save(pending)
    assert time.monotonic() - started < 3  # the page is not frozen for long
    assert "locked" in e.value.message and str(path) in e.value.message and len(pending) == 2
    holder.rollback()
    holder.close()
    store.save(pending)
    assert pending == [] and store.tally() == {"tuned": 1, "base": 1, "tie": 1}


def test_each_vote_records_the_character_and_both_models(tmp_path):
    store = core.VoteStore(tmp_path / "v.sqlite", "bajie", SOURCES)
    store.save([vote(winner="base", left="base", right="tuned")])
    row = sqlite3.connect(tmp_path / "v.sqlite").execute(
        "SELECT character, left_model, left_source, right_source, tuned_source, winner FROM votes").fetchone()
    assert row == ("bajie", "base", "/w/lab/base", "/w/lab/merged", "/w/lab/merged", "base")


def test_a_page_counts_only_its_character_and_models(tmp_path):
    path = tmp_path / "compare_votes.sqlite"
    lab6 = core.VoteStore(path, "bajie", SOURCES)
    lab7 = core.VoteStore(path, "daiyu", {"base": "/w/lab/base", "tuned": "/w/lab7/merged"})
    retrained = core.VoteStore(path, "bajie", {"base": "/w/lab/base", "tuned": "/w/lab/merged-v2"})
    lab6.save([vote(), vote(), vote("base")])
    lab7.save([vote("both_bad")])
    assert lab6.tally() == {"tuned": 2, "base": 1}
    assert lab7.tally() == {"both_bad": 1}
    assert retrained.tally() == {}
    assert core.VoteStore(path, "bajie", {"tuned": "/w/lab/merged"}).tally() == {}  # one model: no A/B


def test_an_old_vote_file_is_migrated_in_place_without_losing_rows(tmp_path):
    path = tmp_path / "compare_votes.sqlite"
    with sqlite3.connect(path) as db:  # the schema before votes named their character and models
        db.execute("""CREATE TABLE votes (id INTEGER PRIMARY KEY, ts REAL, prompt TEXT, left_model TEXT,
            right_model TEXT, winner TEXT, left_answer TEXT, right_answer TEXT, settings TEXT)""")
        db.execute("INSERT INTO votes (ts, prompt, left_model, right_model, winner) "
                   "VALUES (1, '你好', 'base', 'tuned', 'tuned')")
    store = core.VoteStore(path, "bajie", SOURCES)
    store.save([vote()])
    rows = sqlite3.connect(path).execute("SELECT prompt, winner, character, left_source FROM votes "
                                         "ORDER BY id").fetchall()
    assert rows == [("你好", "tuned", None, None), ("你是谁？", "tuned", "bajie", "/w/lab/merged")]
    assert store.tally() == {"tuned": 1}  # an old vote's character is unknown: not counted for bajie


def test_votes_live_beside_the_workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert core.default_votes_path({"base": "lab/base", "tuned": "lab/merged"}) == \
        tmp_path / "lab" / "compare_votes.sqlite"
    assert core.default_votes_path({}) == tmp_path / "compare_votes.sqlite"
    assert core.model_identities([BASE, TUNED], {"tuned": "lab/merged"}) == \
        {"base": f"base@{BASE.url}", "tuned": str(tmp_path / "lab" / "merged")}


def test_an_unopenable_vote_file_is_an_error_not_a_crash(tmp_path):
    (tmp_path / "lab").write_text("a file where the folder should be")
    store = core.VoteStore(tmp_path / "lab" / "compare_votes.sqlite", "bajie", SOURCES)
    with pytest.raises(core.VoteStoreError) as e:
        store.tally()
    assert "cannot open" in e.value.message and "--votes" in e.value.fix
