"""The compare page in headless Debian Chromium: a prompt fills both columns, a blind vote lands in
SQLite, a dead server shows as an error in the page, a blind turn names no model before its vote, a
broken vote file leaves the page chatting."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from kit_testing import ROOT
from serve_testing import build_always_stop_model, free_port, running_server, wait_http

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium "
                                 "(`make browser` or `apt-get install chromium`)")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def page_server(endpoints: dict[str, str], paths: dict[str, Path], votes: Path | None):
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "serve" / "compare_app.py"),
           "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--"] + (["--votes", str(votes)] if votes else [])
    for name, url in endpoints.items():
        cmd += ["--endpoint", f"{name}={url}"]
    for name, path in paths.items():
        cmd += ["--model-path", f"{name}={path}"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health", timeout=90, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


@contextmanager
def browser(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=str(CHROMIUM),
                                                   args=FLAGS, headless=True,
                                                   viewport={"width": 1400, "height": 1000})
        try:
            yield ctx.new_page()
        finally:
            ctx.close()


def ask(page, prompt: str) -> None:
    box = page.locator('textarea[data-testid="stChatInputTextArea"]')
    box.wait_for(timeout=60_000)
    box.fill(prompt)
    box.press("Enter")


def test_prompt_fills_both_columns_and_vote_is_stored(tiny_model, tuned_model, tmp_path):
    votes = tmp_path / "votes.sqlite"
    with running_server({"base": tiny_model, "tuned": tuned_model}) as api, \
            page_server({"base": f"{api}/v1", "tuned": f"{api}/v1"},
                        {"base": tiny_model, "tuned": tuned_model}, votes) as url, browser(tmp_path) as page:
        page.goto(url)
        page.get_by_text("Blind A/B mode").click()
        ask(page, "你是谁？")
        vote = page.get_by_role("button", name="A is better")
        vote.wait_for(timeout=120_000)  # appears once both answers are complete
        answers = page.locator('[data-testid="stChatMessage"]').filter(has_text="B").all_inner_texts()
        assert len(page.locator('[data-testid="stChatMessage"]').all()) == 4  # 2 prompts + 2 answers
        assert all(len(a.strip()) > 2 for a in answers)
        page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
        vote.click()
        page.get_by_text("1 votes").wait_for(timeout=60_000)
        page.get_by_text("A = ").first.wait_for(timeout=10_000)  # names revealed after the vote
    rows = sqlite3.connect(votes).execute("SELECT prompt, left_model, right_model, winner, left_answer, "
                                          "right_answer FROM votes").fetchall()
    assert len(rows) == 1
    prompt, left, right, winner, left_answer, right_answer = rows[0]
    assert prompt == "你是谁？" and {left, right} == {"base", "tuned"} and winner == left
    assert left_answer and right_answer


def finished_answers(page, sides, timeout=120.0) -> dict[str, str]:
    """Each side's answer once streaming is over: the same text on two reads a second apart."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        messages = page.locator('[data-testid="stChatMessage"]')
        texts = {side: messages.filter(has_text=side).last.inner_text().split(side, 1)[1].strip()
                 for side in sides if messages.filter(has_text=side).count()}
        if len(texts) == len(sides) and texts == last and "…" not in texts.values():
            return texts
        last = texts
        time.sleep(1)
    raise AssertionError(f"answers still streaming after {timeout:.0f} s: {last}")


def test_side_by_side_shows_the_persona_taking(tiny_model, tuned_model, tmp_path):
    """A question 八戒 never saw in training, at temperature 0: both columns answer in readable
    Chinese, the base as a plain assistant, the tuned model in 八戒's voice. KIT_SCREENSHOT=PATH keeps
    the page as a picture (docs/compare-page.png was taken this way)."""
    from kit.eval.style import persona_markers
    from kit.persona import persona_for

    markers = persona_markers(persona_for("bajie"))
    with running_server({"base": tiny_model, "tuned": tuned_model}) as api, \
            page_server({"base": f"{api}/v1", "tuned": f"{api}/v1"},
                        {"base": tiny_model, "tuned": tuned_model}, tmp_path / "v.sqlite") as url, \
            browser(tmp_path) as page:
        page.goto(url)
        temperature = page.get_by_role("slider").first
        temperature.wait_for(timeout=60_000)
        temperature.focus()
        temperature.press("Home")  # 0.0: greedy, as kit eval measures
        page.get_by_text("0.00").first.wait_for(timeout=10_000)
        ask(page, "你知道如来佛祖吗？")
        texts = finished_answers(page, ("base", "tuned"))
        if os.environ.get("KIT_SCREENSHOT"):
            page.screenshot(path=os.environ["KIT_SCREENSHOT"], full_page=True)
    for side, text in texts.items():
        chinese = sum("\u4e00" <= c <= "\u9fff" for c in text)
        assert chinese >= 6 and "\ufffd" not in text, (side, text)
    assert [m for m in markers if m in texts["tuned"]], texts
    assert not [m for m in markers if m in texts["base"]], texts


def test_dead_server_is_an_error_in_the_page(tiny_model, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with running_server({"base": tiny_model}) as api, \
            page_server({"base": f"{api}/v1", "tuned": dead}, {}, tmp_path / "v.sqlite") as url, \
            browser(tmp_path) as page:
        page.goto(url)
        ask(page, "hi")
        page.get_by_text("cannot reach the 'tuned' server").wait_for(timeout=120_000)
        assert "Traceback" not in page.content()


def test_blind_turn_names_no_model_until_the_vote(tiny_model, tmp_path):
    """One side answers nothing, the other's server is down: both are done, so the vote buttons show
    ("both bad" is the honest vote), and neither the errors nor the export tell which side is which
    until the vote. The vote lands beside the tuned model's folder, naming character and models."""
    run = tmp_path / "run"
    silent = build_always_stop_model(tiny_model, run / "base")
    merged = shutil.copytree(tiny_model, run / "merged")
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with running_server({"base": silent}) as api, \
            page_server({"base": f"{api}/v1", "tuned": dead}, {"base": silent, "tuned": merged}, None) as url, \
            browser(tmp_path) as page:
        page.goto(url)
        page.get_by_text("Blind A/B mode").click()
        ask(page, "你是谁？")
        page.get_by_role("button", name="Both bad").wait_for(timeout=120_000)
        answers = " ".join(page.locator('[data-testid="stChatMessage"]').all_inner_texts())
        assert "cannot reach the side" in answers
        assert "tuned" not in answers and "base" not in answers and dead not in answers, answers
        with page.expect_download() as download:
            page.get_by_role("button", name="Export JSON").click()
        turn = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))["turns"][0]
        assert set(turn["answers"]) == {"A", "B"} and "tuned" not in json.dumps(turn), turn
        page.get_by_role("button", name="Both bad").click()
        page.get_by_text("A = ").first.wait_for(timeout=30_000)  # revealed once voted
        page.get_by_text("1 votes").wait_for(timeout=30_000)
    rows = sqlite3.connect(run / "compare_votes.sqlite").execute(
        "SELECT winner, character, tuned_source FROM votes").fetchall()
    assert rows == [("both_bad", "bajie", str(merged))]


def test_corrupt_vote_file_keeps_the_page_chatting_and_the_vote(tiny_model, tmp_path):
    silent = build_always_stop_model(tiny_model, tmp_path / "silent")
    votes = tmp_path / "compare_votes.sqlite"
    votes.write_bytes(b"this is not SQLite " * 200)
    with running_server({"base": silent, "tuned": silent}) as api, \
            page_server({"base": f"{api}/v1", "tuned": f"{api}/v1"}, {}, votes) as url, \
            browser(tmp_path) as page:
        page.goto(url)
        warning = page.locator('[data-testid="stAlert"]').filter(has_text="Votes are not being saved")
        warning.wait_for(timeout=60_000)
        assert str(votes) in warning.inner_text() and "move it aside" in warning.inner_text()
        page.get_by_text("Blind A/B mode").click()
        ask(page, "你是谁？")
        page.get_by_role("button", name="Tie").click(timeout=120_000)
        page.get_by_text("1 vote(s) wait in this page").wait_for(timeout=30_000)
        votes.rename(tmp_path / "compare_votes.sqlite.broken")  # the fix the warning names
        page.get_by_role("button", name="Retry saving votes").click()
        page.get_by_text("1 votes").wait_for(timeout=30_000)
        assert "Traceback" not in page.content()
    assert sqlite3.connect(votes).execute("SELECT winner FROM votes").fetchall() == [("tie",)]
