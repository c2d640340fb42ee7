"""The Streamlit compare page: one prompt, base and tuned answers side by side, both streaming.

  python -m streamlit run serve/compare_app.py -- --endpoint base=http://127.0.0.1:23333/v1 \
      --endpoint tuned=http://127.0.0.1:23333/v1 [--model-path NAME=PATH]… [--character C] [--votes FILE]
`kit serve` starts it with these arguments. --model-path lets the page count tokens with the model's own
tokenizer and read its context window, so each side's history is truncated to fit. Votes go to --votes,
default compare_votes.sqlite beside the tuned model's folder (the current directory without one).
"""

import argparse
import json
import os
import random
import sys
from pathlib import Path

import openai
import streamlit as st
from rich.console import Console

from kit.artifacts import choose_persona
from kit.serve import compare_core as core


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", action="append", default=[], help="NAME=URL (OpenAI base URL)")
    p.add_argument("--model-path", action="append", default=[], help="NAME=PATH (tokenizer + context)")
    p.add_argument("--character", default=None, help="default: the one the models record (kit_merge.json)")
    p.add_argument("--votes", default=None)
    p.add_argument("--api-key-env", default=None)
    return p.parse_args(argv)


def pairs(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


@st.cache_resource
def token_counter(path: str | None):
    """The model's tokenizer and chat template when the page knows the model folder, else ~1 per char."""
    if path:
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
            return lambda msgs: len(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True))
        except (OSError, ValueError):
            pass
    return lambda msgs: sum(len(m["content"]) + 8 for m in msgs)


def context_of(path: str | None) -> int:
    config = Path(path or "") / "config.json"
    if config.is_file():
        return int(json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings", 2048))
    return 2048


args = parse_args(sys.argv[1:])
paths = pairs(args.model_path)
endpoints = [core.Endpoint(n, u, context_of(paths.get(n))) for n, u in pairs(args.endpoint).items()]
persona = choose_persona(args.character, list(paths.values()), Console(stderr=True, quiet=True))
votes = core.VoteStore(Path(args.votes) if args.votes else core.default_votes_path(paths), persona.character,
                       core.model_identities(endpoints, paths))
api_key = os.environ.get(args.api_key_env, "") if args.api_key_env else "unused"

st.set_page_config(page_title=f"kit compare · {persona.name}", layout="wide")
state = st.session_state
state.setdefault("turns", [])
state.setdefault("unsaved_votes", [])  # votes the database refused (locked, corrupt): retried each run


def save_and_tally() -> tuple[dict[str, int] | None, core.VoteStoreError | None]:
    try:
        votes.save(state.unsaved_votes)
        return votes.tally(), None
    except core.VoteStoreError as e:
        return None, e


tally, vote_problem = save_and_tally()

with st.sidebar:
    st.header("Settings")
    system = st.text_area("System prompt", persona.system_prompt, height=180, key="system")
    temperature = st.slider("Temperature", 0.0, 1.5, 0.7, 0.05)
    top_p = st.slider("Top-p", 0.05, 1.0, 0.9, 0.05)
    top_k = st.number_input("Top-k (0 = off)", 0, 200, 40)
    max_tokens = st.number_input("Max new tokens", 1, 4096, 256)
    blind = st.toggle("Blind A/B mode", value=False, disabled=len(endpoints) != 2,
                      help="Sides are shuffled and named A/B; vote, then the names are revealed.")
    if st.button("Clear conversation"):
        state.turns = []
    settings = {"system": system, "temperature": temperature, "top_p": top_p, "top_k": int(top_k),
                "max_tokens": int(max_tokens), "blind": blind, "models": [e.name for e in endpoints]}
    st.download_button("Export JSON", core.export_json(state.turns, settings), "conversation.json",
                       "application/json")
    st.download_button("Export Markdown", core.export_markdown(state.turns, settings), "conversation.md",
                       "text/markdown")
    st.subheader("Blind votes")
    if tally is not None:
        rates = {e.name: core.win_rate(tally, e.name) for e in endpoints}
        st.caption(f"{sum(tally.values())} votes ({persona.name}, these two models) · " + " · ".join(
            f"{n} wins {r:.0%}" for n, r in rates.items() if r is not None) if tally else "no votes yet")
    st.caption(f"stored in {votes.path}")

st.title(f"{persona.name} · base vs tuned")
if not endpoints:
    st.error("No model endpoints were given: start the page through `kit serve`.")
    st.stop()
if vote_problem:
    waiting = (f"{len(state.unsaved_votes)} vote(s) wait in this page and are saved at your next action once "
               "fixed." if state.unsaved_votes else "votes you cast wait in this page until it is fixed.")
    st.warning(f"Votes are not being saved: {vote_problem.message}\n\nFix: {vote_problem.fix}. "
               f"Chatting works as usual; {waiting}")
    st.button("Retry saving votes")  # any click reruns the page, which retries


def render_turn(turn: dict, cols) -> dict:
    """Draw one turn in the columns; return the answer placeholders by model name."""
    slots = {}
    for i, col in enumerate(cols):
        name = turn["order"][i]
        with col:
            st.chat_message("user").write(turn["prompt"])
            with st.chat_message("assistant"):
                st.caption(core.side_label(turn, i))
                slots[name] = st.empty()
                slots[name].markdown(turn["answers"].get(name) or "…")
                if name in turn.get("errors", {}):
                    st.error(turn["errors"][name])
    return slots


prompt = st.chat_input(f"对{persona.name}说点什么…")
order = [e.name for e in endpoints]
cols = st.columns(len(endpoints))
for i, col in enumerate(cols):
    with col:
        st.container(key=f"head-{i}").subheader("Side " + "AB"[i] if blind else order[i])

for turn in state.turns:
    render_turn(turn, cols)

if prompt:
    shuffled = random.sample(order, len(order)) if blind else order
    turn = {"prompt": prompt, "order": shuffled, "blind": blind, "answers": {}, "errors": {}, "vote": None}
    slots = render_turn(turn, cols)
    by_name = {e.name: e for e in endpoints}
    requests = {}
    for name in shuffled:
        ep = by_name[name]
        history = core.history_for(state.turns, name)
        requests[ep] = core.fit_context(system, history, prompt, int(max_tokens), ep.context,
                                        token_counter(paths.get(name)))
    params = {"temperature": temperature, "top_p": top_p, "max_tokens": int(max_tokens),
              "extra_body": {"top_k": int(top_k)}}
    client = lambda ep: openai.OpenAI(base_url=ep.url, api_key=api_key, timeout=300, max_retries=0)  # noqa: E731
    sides = dict(zip(shuffled, "AB")) if blind else None
    for name, text, error in core.stream_all(client, requests, params, sides):
        turn["answers"][name] = text
        slots[name].markdown(text or "…")
        if error:
            turn["errors"][name] = error
    state.turns.append(turn)
    st.rerun()  # redraw with the vote buttons and the updated exports

last = state.turns[-1] if state.turns else None
if last and core.can_vote(last):
    st.write("Which answer is better?")
    choices = [("A is better", last["order"][0]), ("B is better", last["order"][1]),
               ("Tie", "tie"), ("Both bad", "both_bad")]
    for i, (col, (label, winner)) in enumerate(zip(st.columns(4), choices)):
        if col.button(label, key=f"vote-{i}", width="stretch"):
            state.unsaved_votes.append(core.vote_row(last, winner, settings))
            last["vote"] = winner  # the rerun saves it (or keeps it queued and says why)
            st.rerun()
