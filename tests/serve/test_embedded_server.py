"""The embedded server through the official `openai` client: plain, streamed, stop tokens, keys."""

import asyncio
import time

import httpx
import openai
import pytest
from serve_testing import build_always_stop_model, running_server

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server(tiny_model, tuned_model, tmp_path_factory):
    stopper = build_always_stop_model(tiny_model, tmp_path_factory.mktemp("m") / "stopper")
    with running_server({"base": tiny_model, "tuned": tuned_model, "stopper": stopper}) as url:
        yield url


def client(url, key="unused"):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, timeout=60, max_retries=0)


def test_models_and_health(server):
    assert {m.id for m in client(server).models.list()} == {"base", "tuned", "stopper"}
    assert httpx.get(f"{server}/health").json()["status"] == "ok"


@pytest.mark.parametrize("name", ["base", "tuned"])
def test_plain_and_stream_agree(server, name):
    c = client(server)
    ask = dict(model=name, messages=[{"role": "user", "content": "你是谁？"}], max_tokens=12, temperature=0)
    plain = c.chat.completions.create(**ask)
    text = plain.choices[0].message.content
    assert text and plain.choices[0].finish_reason == "length"
    assert plain.usage.completion_tokens == 12
    chunks = list(c.chat.completions.create(**ask, stream=True))
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert streamed == text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_persona_system_prompt_applied_when_missing(server):
    from kit.persona import persona_for

    c, user = client(server), {"role": "user", "content": "你好"}
    system = {"role": "system", "content": persona_for("bajie").system_prompt}
    ask = dict(model="base", max_tokens=4, temperature=0)
    implicit = c.chat.completions.create(messages=[user], **ask)
    explicit = c.chat.completions.create(messages=[system, user], **ask)
    other = c.chat.completions.create(messages=[{"role": "system", "content": "你是助手"}, user], **ask)
    assert implicit.usage.prompt_tokens == explicit.usage.prompt_tokens > other.usage.prompt_tokens
    assert implicit.choices[0].message.content == explicit.choices[0].message.content


def test_im_end_stops_generation(server):
    c = client(server)
    ask = dict(model="stopper", messages=[{"role": "user", "content": "hi"}], max_tokens=50)
    r = c.chat.completions.create(**ask)
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("", "stop")
    assert r.usage.completion_tokens == 0
    last = list(c.chat.completions.create(**ask, stream=True))[-1]
    assert last.choices[0].finish_reason == "stop"


def test_stop_string(server):
    c = client(server)
    ask = dict(model="base", messages=[{"role": "user", "content": "你是谁？"}], max_tokens=24, temperature=0)
    full = c.chat.completions.create(**ask).choices[0].message.content
    stop = full[len(full) // 2:len(full) // 2 + 2]
    cut = c.chat.completions.create(**ask, stop=[stop])
    assert cut.choices[0].message.content == full[:full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = "".join(ch.choices[0].delta.content or "" for ch in
                       c.chat.completions.create(**ask, stop=[stop], stream=True) if ch.choices)
    assert streamed == full[:full.index(stop)]


def test_errors_are_openai_errors(server):
    c = client(server)
    with pytest.raises(openai.NotFoundError, match="not found"):
        c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="context window"):
        c.chat.completions.create(model="base", messages=[{"role": "user", "content": "x"}], max_tokens=100000)


def test_api_key(tiny_model):
    with running_server({"base": tiny_model}, api_key="s3cret") as url:
        with pytest.raises(openai.AuthenticationError):
            client(url, "wrong").models.list()
        assert [m.id for m in client(url, "s3cret").models.list()] == ["base"]
        assert httpx.get(f"{url}/health").status_code == 200


def test_32_concurrent_streaming_clients(server):
    async def one(c, i):
        stream = await c.chat.completions.create(
            model=("base", "tuned")[i % 2], messages=[{"role": "user", "content": f"第{i}个问题"}],
            max_tokens=8, temperature=0.8, stream=True)
        parts = [ch.choices[0].delta.content or "" async for ch in stream if ch.choices]
        return "".join(parts)

    async def main():
        c = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="x", timeout=120, max_retries=0)
        return await asyncio.wait_for(asyncio.gather(*(one(c, i) for i in range(32))), timeout=150)

    start = time.monotonic()
    answers = asyncio.run(main())
    assert len(answers) == 32 and all(answers)
    print(f"32 streaming clients in {time.monotonic() - start:.1f}s")
