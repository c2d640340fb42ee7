"""The embedded server through the official `openai` client: plain, streamed, stop tokens, keys, bad
parameters as OpenAI errors, no thread left behind."""

import asyncio
import threading
import time

import httpx
import openai
import pytest
from serve_testing import build_always_stop_model, build_one_token_model, running_server

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
        chunks = [ch.choices[0] async for ch in stream if ch.choices]
        return "".join(ch.delta.content or "" for ch in chunks), chunks[-1].finish_reason

    async def main():
        c = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="x", timeout=120, max_retries=0)
        return await asyncio.wait_for(asyncio.gather(*(one(c, i) for i in range(32))), timeout=150)

    start = time.monotonic()
    answers = asyncio.run(main())
    # Every stream ends properly; one that ran to max_tokens has text (sampling may pick a stop token first).
    assert len(answers) == 32 and all(reason in ("stop", "length") for _, reason in answers), answers
    assert all(text for text, reason in answers if reason == "length"), answers
    print(f"32 streaming clients in {time.monotonic() - start:.1f}s")


def test_completions_echo_logprobs_give_kit_evals_perplexity(server, tuned_model):
    """`kit eval` scores a served model through /v1/completions (echo + logprobs): the reply's log-probs
    must be the ones the local model gives, so perplexity over the server equals perplexity on disk."""
    from kit.eval.backends import Endpoint, LocalModel

    conversation = [{"role": "system", "content": "你是猪八戒。"}, {"role": "user", "content": "师父去哪了？"},
                    {"role": "assistant", "content": "俺老猪也不知道，怕是又被妖怪捉去了。"}]
    served = Endpoint(f"{server}/v1#tuned").reply_score(conversation)
    local = LocalModel(tuned_model).reply_score(conversation)
    assert served.tokens == local.tokens and abs(served.nll - local.nll) < 1e-3 * local.tokens, (served, local)

    c = client(server)
    prompt = "<|im_start|>user\n你是谁？<|im_end|>\n<|im_start|>assistant\n"
    out = c.completions.create(model="tuned", prompt=prompt, echo=True, logprobs=2, max_tokens=3, temperature=0)
    choice, lp = out.choices[0], out.choices[0].logprobs
    assert choice.text.startswith(prompt) and out.usage.completion_tokens == 3
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.text_offset) == len(lp.top_logprobs)
    assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0
    assert all(v <= 0 for v in lp.token_logprobs) and all(len(t) == 2 for t in lp.top_logprobs)
    # greedy: each generated token is the most likely one at its position
    for token, top in zip(lp.tokens[-3:], lp.top_logprobs[-3:]):
        assert token == max(top, key=top.get)
    plain = c.completions.create(model="tuned", prompt=prompt, max_tokens=3, temperature=0)
    assert plain.choices[0].text == choice.text[len(prompt):] and plain.choices[0].logprobs is None
    with pytest.raises(openai.BadRequestError, match="stream"):
        c.completions.create(model="tuned", prompt=prompt, stream=True)


@pytest.fixture(scope="module")
def tiny_server(tiny_model, tmp_path_factory):
    """The tiny base and `chatter`, a model that never stops (always 哈): no demo needed."""
    from transformers import AutoTokenizer

    ha = AutoTokenizer.from_pretrained(tiny_model).encode("哈", add_special_tokens=False)[-1]
    chatter = build_one_token_model(tiny_model, tmp_path_factory.mktemp("m") / "chatter", ha)
    with running_server({"base": tiny_model, "chatter": chatter}) as url:
        yield url


HI = [{"role": "user", "content": "hi"}]
LONG = dict(model="chatter", messages=HI, max_tokens=1800)  # about 10 s of generation on a free CPU


@pytest.mark.parametrize("bad, param", [
    ({"seed": 2**64}, "seed"), ({"seed": -1}, "seed"), ({"max_tokens": 0}, "max_tokens"),
    ({"max_completion_tokens": -5}, "max_completion_tokens"), ({"temperature": 2.5}, "temperature"),
    ({"top_p": 0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"n": 2}, "n"), ({"stop": 5}, "stop"),
    ({"messages": []}, "messages"), ({"messages": [{"role": "user"}]}, "messages[0]"),
    ({"messages": ["hi"]}, "messages[0]"),
])
def test_rejected_parameters_are_openai_400s_naming_the_field(tiny_server, bad, param):
    with pytest.raises(openai.BadRequestError) as e:
        client(tiny_server).chat.completions.create(**{"model": "base", "messages": HI, "max_tokens": 2, **bad})
    # What the user sees: the client's message names the field (not a bare "Error code: 422").
    assert e.value.param == param and e.value.message.startswith(f"Error code: 400 - {param}: "), e.value.message


def test_rejected_completion_parameters_name_the_field(tiny_server):
    for bad, param in (({"seed": 2**70}, "seed"), ({"logprobs": 9}, "logprobs"), ({"max_tokens": -1}, "max_tokens")):
        with pytest.raises(openai.BadRequestError) as e:
            client(tiny_server).completions.create(**{"model": "base", "prompt": "hi", **bad})
        assert e.value.param == param, e.value.body


def test_malformed_bodies_get_the_openai_error_shape(tiny_server):
    url = f"{tiny_server}/v1/chat/completions"
    broken = httpx.post(url, content=b'{"model": "base", "messages": [', timeout=10,
                        headers={"content-type": "application/json"})
    assert broken.status_code == 400, broken.text
    assert broken.json()["error"]["message"] == "the request body is not valid JSON: Expecting value at character 31"
    missing = httpx.post(url, json={"model": "base"}, timeout=10)
    assert missing.status_code == 400
    assert missing.json() == {"error": {"message": "messages: Field required", "type": "invalid_request_error",
                                        "param": "messages", "code": 400}}
    not_object = httpx.post(url, json=["hi"], timeout=10)
    assert not_object.status_code == 400 and not_object.json()["error"]["message"].startswith("request body")


def test_a_huge_seed_is_refused_and_leaks_no_thread(tiny_server):
    """A seed past torch's 64 bits used to kill the generation thread before it said so: the request
    hung and its reader thread spun forever."""
    ask = {"model": "base", "messages": HI, "max_tokens": 2}
    with httpx.Client(base_url=f"{tiny_server}/v1", timeout=10) as http:
        assert http.post("/chat/completions", json={**ask, "seed": 2**64 - 1}).status_code == 200
        before = threading.active_count()
        for stream in (False, True) * 10:
            r = http.post("/chat/completions", json={**ask, "seed": 2**64 + 7, "stream": stream})
            assert r.status_code == 400 and r.json()["error"]["param"] == "seed", r.text
    assert threading.active_count() <= before


def test_engine_hands_a_worker_failure_to_its_reader(tiny_model):
    from kit.serve.hf_engine import HFChatModel, SamplingParams

    model, failed = HFChatModel("base", tiny_model, ""), {}

    def read():
        try:
            list(model.stream(HI, SamplingParams(max_tokens=2, seed=2**70)))
        except ValueError as e:
            failed["error"] = e

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(30)
    assert "Overflow" in str(failed.get("error")), "the reader hung: its worker died without a word"


def settled(baseline: int, seconds: float) -> bool:
    """Whether this process is back to `baseline` threads within `seconds` (generation threads ended)."""
    deadline = time.monotonic() + seconds
    while threading.active_count() > baseline:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_stream_the_client_leaves_stops_generating(tiny_server):
    baseline = threading.active_count()
    with httpx.Client(timeout=60) as http:
        with http.stream("POST", f"{tiny_server}/v1/chat/completions", json={**LONG, "stream": True}) as r:
            lines = r.iter_lines()
            assert [next(lines) for _ in range(6)][-2].startswith("data: ")
            assert threading.active_count() > baseline  # the worker and its pump are running
    assert settled(baseline, 4)


def test_a_plain_request_the_client_leaves_stops_generating(tiny_server):
    """Without streaming nothing is sent until the end, so the server watches for the disconnect."""
    baseline = threading.active_count()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{tiny_server}/v1/chat/completions", json=LONG, timeout=httpx.Timeout(60, read=1.5))
    assert threading.active_count() > baseline
    assert settled(baseline, 4)
