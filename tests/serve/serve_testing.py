"""Helpers for the serve tests: free ports, an in-process embedded server, a model that always stops."""

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from kit.serve.launch import free_port  # noqa: F401  (the serve tests import it from here)


def wait_http(url: str, timeout: float = 120, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout}s")


@contextmanager
def running_server(models: dict[str, Path], api_key: str | None = None, system_prompt: str | None = None):
    """The embedded server in a thread of this process, on a free loopback port; yields its base URL."""
    import uvicorn

    from kit.persona import persona_for
    from kit.serve.hf_engine import HFChatModel
    from kit.serve.openai_api import create_app

    system = persona_for("bajie").system_prompt if system_prompt is None else system_prompt
    app = create_app({n: HFChatModel(n, p, system) for n, p in models.items()}, api_key)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def build_one_token_model(src: Path, out: Path, token: int) -> Path:
    """A copy of `src` whose every next token is `token` (<|im_end|>, id 4: a model that always stops;
    an ordinary one: a model that never stops): a constant residual stream (equal embeddings, zeroed
    attention and MLP outputs) and an output head that favours `token`."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    shutil.copytree(src, out)
    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True, torch_dtype=torch.float32)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb.copy_(torch.ones_like(emb))
        for layer in model.model.layers:
            layer.attention.wo.weight.zero_()
            layer.feed_forward.w2.weight.zero_()
        head = model.get_output_embeddings().weight
        head.zero_()
        head[token] = 10.0
    model.save_pretrained(out, safe_serialization=True)
    return out


def build_always_stop_model(src: Path, out: Path) -> Path:
    return build_one_token_model(src, out, 4)


def build_byte_cycle_model(src: Path, out: Path, char: str = "你") -> Path:
    """A copy of `src` that says `char` over and over, one UTF-8 byte per token, as InternLM2's real
    tokenizer does for a character outside its vocabulary (sentencepiece byte fallback, `<0xE4>`…).
    The tokenizer's last ids become byte tokens; the model is a bigram machine: the residual stream is
    the input token's one-hot slot (zeroed attention and MLP outputs), the head maps it to the next byte."""
    import json
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    shutil.copytree(src, out)
    spec = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    vocab, raw = spec["model"]["vocab"], char.encode()
    ids = list(range(len(vocab) - len(raw), len(vocab)))
    names = {i: t for t, i in vocab.items()}
    for i, byte in zip(ids, raw):
        vocab[f"<0x{byte:02X}>"] = vocab.pop(names[i])
    spec["model"]["byte_fallback"] = True
    spec["decoder"] = {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]}
    (out / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")

    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True, torch_dtype=torch.float32)
    with torch.no_grad():
        emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
        emb.zero_()
        emb[:, 0] = 1.0  # slot 0: any other token (the prompt's last) -> the first byte
        head.zero_()
        head[ids[0], 0] = 10.0
        for k, i in enumerate(ids):  # slot k+1: byte k -> byte k+1, the last byte -> the first
            emb[i] = 0.0
            emb[i, k + 1] = 1.0
            head[ids[(k + 1) % len(ids)], k + 1] = 10.0
        for layer in model.model.layers:
            layer.attention.wo.weight.zero_()
            layer.feed_forward.w2.weight.zero_()
        model.model.norm.weight.fill_(1.0)
    model.save_pretrained(out, safe_serialization=True)
    return out
