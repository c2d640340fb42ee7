"""A reply cut by max_tokens never ends in half a character. InternLM2's tokenizer spells a character
outside its vocabulary as UTF-8 byte tokens; before, a cut after one or two of its three bytes ended
the reply, plain and streamed, in U+FFFD."""

import json

import httpx
import pytest
from serve_testing import build_byte_cycle_model, running_server

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    model = build_byte_cycle_model(tiny_model, tmp_path_factory.mktemp("m") / "bytes", "你")
    with running_server({"bytes": model}) as url:
        yield url


def chat(url: str, max_tokens: int, stream: bool) -> tuple[str, str]:
    ask = {"model": "bytes", "messages": [{"role": "user", "content": "你是谁？"}], "max_tokens": max_tokens,
           "temperature": 0, "stream": stream}
    if not stream:
        choice = httpx.post(f"{url}/v1/chat/completions", json=ask, timeout=60).json()["choices"][0]
        return choice["message"]["content"], choice["finish_reason"]
    text, finish = "", None
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=ask, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                choice = json.loads(line.removeprefix("data: "))["choices"][0]
                text += choice["delta"].get("content") or ""
                finish = choice["finish_reason"] or finish
    return text, finish


@pytest.mark.parametrize("max_tokens", range(1, 8))
def test_a_cut_drops_the_incomplete_character_plain_and_streamed(server, max_tokens):
    plain, streamed = chat(server, max_tokens, stream=False), chat(server, max_tokens, stream=True)
    assert plain == streamed == ("你" * (max_tokens // 3), "length")


def test_a_raw_completion_cut_mid_character_drops_it_too(server):
    ask = {"model": "bytes", "prompt": "你是谁？", "max_tokens": 5, "temperature": 0}
    choice = httpx.post(f"{server}/v1/completions", json=ask, timeout=60).json()["choices"][0]
    assert (choice["text"], choice["finish_reason"]) == ("你", "length")
