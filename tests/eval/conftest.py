"""Fixtures for kit eval: a base tiny InternLM2, a LoRA-tuned copy with real checkpoints, and fake
OpenAI-compatible servers over real HTTP on loopback."""

import json
import shutil
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

LINES = Path(__file__).with_name("bajie_lines.jsonl")
CHECKPOINT_STEPS = (4, 12, 40)


@dataclass
class EvalModels:
    base: Path
    tuned: Path  # merged after the last step
    adapters: list[Path]  # PEFT adapters after each of CHECKPOINT_STEPS
    eval_file: Path


def conversations(split: str) -> list[list[dict]]:
    """Our own test lines, under the persona's system prompt (never a copy of it)."""
    from kit.persona import persona_for

    system = {"role": "system", "content": persona_for("bajie").system_prompt}
    rows = [json.loads(line) for line in LINES.read_text(encoding="utf-8").splitlines()]
    return [[system, {"role": "user", "content": r["user"]}, {"role": "assistant", "content": r["reply"]}]
            for r in rows if r["split"] == split]


def _batch(tokenizer, convs):
    import torch

    rows = []
    for messages in convs:
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        p = tokenizer(prompt, add_special_tokens=False).input_ids
        r = tokenizer(full[len(prompt):].rstrip(), add_special_tokens=False).input_ids
        rows.append((p + r, [-100] * len(p) + r))
    width = max(len(ids) for ids, _ in rows)
    ids = torch.tensor([i + [2] * (width - len(i)) for i, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in rows])
    return ids, labels, mask


def train_lora(base: Path, out: Path) -> EvalModels:
    """LoRA on the train lines with loss on the replies only, as XTuner does; held-out lines stay out."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    torch.set_num_threads(1)  # the tiny model only slows down with more (see kit/eval/backends.py)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, trust_remote_code=True, torch_dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                                             target_modules=["wqkv", "wo", "w1", "w2", "w3"],
                                             modules_to_save=["output"]))
    ids, labels, mask = _batch(tokenizer, conversations("train"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    adapters = []
    for step in range(1, CHECKPOINT_STEPS[-1] + 1):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step in CHECKPOINT_STEPS:
            adapters.append(out / "run" / f"checkpoint-{step}")
            model.save_pretrained(adapters[-1])
    tuned = out / "tuned"
    model.merge_and_unload().save_pretrained(tuned, safe_serialization=True)
    tokenizer.save_pretrained(tuned)
    for code in base.glob("*.py"):  # the remote code the config's auto_map points at
        shutil.copy(code, tuned / code.name)
    eval_file = out / "eval.jsonl"
    eval_file.write_text("".join(json.dumps({"messages": m}, ensure_ascii=False) + "\n"
                                 for m in conversations("eval")), encoding="utf-8")
    return EvalModels(base, tuned, adapters, eval_file)


@pytest.fixture(scope="session")
def eval_models(tiny_model, tmp_path_factory) -> EvalModels:
    return train_lora(tiny_model, tmp_path_factory.mktemp("eval-models"))


class FakeOpenAI:
    """A minimal OpenAI-compatible server on 127.0.0.1: /v1/models, /v1/chat/completions and, when
    `complete` is given, /v1/completions. Every request body is kept in `requests`, every request's
    headers in `headers` (names in lower case). With `key`, a request without `Authorization: Bearer
    KEY` gets a 401, as `kit serve --api-key-env` answers. A `chat` that returns bytes has them sent
    as the body, as is."""

    def __init__(self, chat, complete=None, model="fake", key=None):
        self.requests: list[tuple[str, dict]] = []
        self.headers: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict):
                self._send_raw(status, json.dumps(body).encode())

            def _send_raw(self, status: int, data: bytes):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _refused(self) -> bool:
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                if key is None or self.headers.get("Authorization") == f"Bearer {key}":
                    return False
                self._send(401, {"error": {"message": "invalid or missing API key",
                                           "type": "authentication_error"}})
                return True

            def do_GET(self):
                if self._refused():
                    return
                if self.path == "/v1/models":
                    return self._send(200, {"object": "list", "data": [
                        {"id": model, "object": "model", "created": 0, "owned_by": "test"}]})
                self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append((self.path, body))
                if self._refused():
                    return
                if self.path == "/v1/chat/completions":
                    text = chat(body["messages"], body.get("max_tokens", 16))
                    if isinstance(text, bytes):
                        return self._send_raw(200, text)
                    return self._send(200, {
                        "id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": text}}]})
                if self.path == "/v1/completions" and complete is not None:
                    tokens, logprobs, offsets = complete(body["prompt"])
                    return self._send(200, {
                        "id": "t", "object": "text_completion", "created": 0, "model": body["model"],
                        "choices": [{"index": 0, "text": body["prompt"], "finish_reason": "length",
                                     "logprobs": {"tokens": tokens, "token_logprobs": logprobs,
                                                  "text_offset": offsets, "top_logprobs": None}}]})
                self._send(404, {"error": {"message": f"{self.path} not supported"}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def model_server(path: Path, echo: bool = True) -> FakeOpenAI:
    """Serve a local model: greedy chat, and echo log-probs the way vLLM-style servers report them."""
    import torch

    from kit.eval.backends import LocalModel

    local = LocalModel(path)
    tok = local.tokenizer

    def complete(prompt: str):
        ids = tok(prompt, return_tensors="pt").input_ids  # the server adds BOS, as InternLM2's does
        with torch.no_grad():
            logp = torch.log_softmax(local.model(input_ids=ids).logits[0].float(), -1)
        ids = ids[0].tolist()
        values = [None] + [logp[i - 1, t].item() for i, t in enumerate(ids) if i > 0]
        offsets = [0] + [len(tok.decode(ids[1:i])) for i in range(1, len(ids))]
        return [tok.decode([t]) for t in ids], values, offsets

    return FakeOpenAI(local.generate, complete if echo else None)


@pytest.fixture
def serve():
    """Start fake servers for one test; all are shut down after it."""
    started = []

    def start(*args, **kwargs) -> FakeOpenAI:
        server = (model_server if isinstance(args[0], Path) else FakeOpenAI)(*args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
