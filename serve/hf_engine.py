"""The CPU engine behind the embedded server: one transformers model, chat in, text deltas out.

LMDeploy runs only on GPUs, so on CPU (CI, laptops, `kit demo`) this engine serves the same API.
Generation runs in worker threads (torch releases the GIL), bounded by a semaphore so that many
clients queue instead of oversubscribing the cores.
"""

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from kit import chat_format
from kit.errors import KitError
from kit.hf_models import decode_whole_chars, load_model


@dataclass
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class Delta:
    """A piece of the answer; the last one carries finish_reason ("stop" or "length")."""
    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    token_ids: tuple[int, ...] = ()  # on the last delta: the generated ids (stop tokens excluded)


class ContextOverflow(KitError):
    pass


def with_system_prompt(messages: list[dict], system_prompt: str) -> list[dict]:
    """The persona's system prompt goes first unless the request brings its own."""
    if any(m.get("role") == "system" for m in messages) or not system_prompt:
        return list(messages)
    return [{"role": "system", "content": system_prompt}, *messages]


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing chars could still turn into a stop string (so they are not sent yet)."""
    return max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)


class HFChatModel:
    def __init__(self, name: str, path: Path, system_prompt: str, max_parallel: int = 4):
        import torch

        path = Path(path)
        if not (path / "config.json").is_file():
            raise KitError(f"model '{name}': no config.json in {path}",
                           "pass a Hugging Face model folder (e.g. DIR/merged from `kit demo`)")
        self.name, self.path, self.system_prompt = name, path, system_prompt
        # The CPU engine, even beside a GPU (LMDeploy is the one that serves there).
        self.tokenizer, self.model = load_model(path, dtype=torch.float32, device="cpu")
        if not self.tokenizer.chat_template:
            raise KitError(f"model '{name}': {path} has no chat template in its tokenizer config",
                           "use a model written by `kit merge` or the tiny base (`kit demo`)")
        self.stop_ids = chat_format.stop_ids(self.tokenizer, self.model.generation_config)
        self.context = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self._slots = threading.Semaphore(max_parallel)

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        messages = with_system_prompt(messages, self.system_prompt)
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)

    def stream(self, messages: list[dict], params: SamplingParams,
               cancelled: threading.Event | None = None) -> Iterator[Delta]:
        """Yield the chat answer's text deltas; blocking, so run it in a worker thread."""
        return self.stream_ids(self.prompt_ids(messages), params, cancelled)

    def stream_ids(self, ids: list[int], params: SamplingParams,
                   cancelled: threading.Event | None = None) -> Iterator[Delta]:
        """Yield text deltas continuing the token ids `ids`; blocking."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        if len(ids) + params.max_tokens > self.context:
            raise ContextOverflow(f"prompt ({len(ids)} tokens) + max_tokens ({params.max_tokens}) exceeds "
                                  f"the context window of '{self.name}' ({self.context} tokens)",
                                  "shorten the history or lower max_tokens")
        tokenizer, stops = self.tokenizer, tuple(s for s in params.stop if s)
        new: list[int] = []
        state = {"sent": 0, "text": "", "stopped": False}
        left = threading.Event()  # the consumer stopped reading (closed, failed): generating is waste

        class Collect(StoppingCriteria):
            # Called once per generated token: collect it, stop on a stop string, a cancel or a leave.
            def __call__(self, input_ids, scores, **kwargs):
                token = int(input_ids[0, -1])
                if token not in stop_ids:
                    new.append(token)
                state["text"] = decode_whole_chars(tokenizer, new)  # never half a character, even cut
                state["stopped"] = any(s in state["text"] for s in stops)
                return state["stopped"] or left.is_set() or bool(cancelled and cancelled.is_set())

        stop_ids = self.stop_ids
        sample = params.temperature > 0
        kwargs = dict(max_new_tokens=params.max_tokens, do_sample=sample, eos_token_id=stop_ids,
                      pad_token_id=stop_ids[0], stopping_criteria=StoppingCriteriaList([Collect()]))
        if sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        done = threading.Event()
        result: dict = {}

        def run():
            # Everything inside the try: a worker that fails without setting `done` hangs its consumer.
            try:
                with self._slots, torch.inference_mode():
                    if params.seed is not None:
                        torch.manual_seed(params.seed)
                    inputs = torch.tensor([ids])
                    result["out"] = self.model.generate(inputs, attention_mask=torch.ones_like(inputs),
                                                        **kwargs)
            except BaseException as e:  # handed to the consumer thread
                result["error"] = e
            finally:
                done.set()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        try:
            while not done.wait(0.02):
                yield from self._pending(state, stops, final=False)
        finally:
            left.set()
        worker.join()
        if "error" in result:
            raise result["error"]
        yield from self._pending(state, stops, final=True)
        last = int(result["out"][0, -1])
        reason = "stop" if state["stopped"] or last in stop_ids else "length"
        yield Delta("", finish_reason=reason, prompt_tokens=len(ids), completion_tokens=len(new),
                    token_ids=tuple(new))

    def score(self, ids: list[int], top: int = 0) -> list[tuple[float | None, dict[str, float]]]:
        """Each token's log-probability given the ones before it (None for the first), with the `top`
        most likely tokens at that position; blocking. What /v1/completions' echo + logprobs returns."""
        import torch

        with self._slots, torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        picked = logprobs.gather(1, torch.tensor(ids[1:]).unsqueeze(1))[:, 0].tolist()
        tops = [{}] * len(picked)
        if top:
            values, indices = logprobs.topk(top, dim=-1)
            tops = [{self.tokenizer.decode([i]): v for i, v in zip(row_i, row_v)}
                    for row_i, row_v in zip(indices.tolist(), values.tolist())]
        return [(None, {}), *zip(picked, tops)]

    @staticmethod
    def _pending(state: dict, stops: tuple[str, ...], final: bool) -> Iterator[Delta]:
        text = state["text"]
        if stops and (cut := min((text.find(s) for s in stops if s in text), default=-1)) >= 0:
            text, final = text[:cut], True
        if not final:
            text = text[:len(text) - _held_back(text, stops)]
        if len(text) > state["sent"]:
            yield Delta(text[state["sent"]:])
            state["sent"] = len(text)
