"""Two ways to reach a model: a local folder (transformers, optionally + a PEFT adapter) or a served
OpenAI-compatible endpoint (so a W4A16 LMDeploy model can be scored too).

Both give greedy replies and, where they can, the log-likelihood of a reference reply given its context.
"""

import math
from dataclasses import dataclass
from pathlib import Path

from kit import chat_format
from kit.errors import KitError
from kit.eval.api import BadAnswer, Server
from kit.hf_models import generate_reply, load_model


@dataclass
class ReplyScore:
    nll: float  # summed negative log-likelihood (nats) of the reply's tokens
    tokens: int


SMALL_MODEL = 50_000_000  # parameters; below this a CPU model runs single-threaded


class PerplexityUnavailable(Exception):
    """This backend cannot give token log-probabilities; the message says why."""


def is_url(source: str | Path) -> bool:
    return str(source).startswith(("http://", "https://"))


class LocalModel:
    """A Hugging Face model folder (merged model), or a PEFT adapter folder applied to `base`."""

    def __init__(self, path: Path, base: Path | None = None):
        import torch

        path = Path(path)
        adapter = (path / "adapter_config.json").is_file()
        weights_from = Path(base) if adapter else path
        if adapter and base is None:
            raise KitError(f"{path} is a LoRA adapter, which needs its base model",
                           "pass --base PATH (a local model folder)")
        if not (weights_from / "config.json").is_file():
            raise KitError(f"not a model folder (no config.json): {weights_from}",
                           "pass a Hugging Face model folder, e.g. DIR/merged from `kit merge`")
        self.label = str(path)
        self.tokenizer, self.model = load_model(weights_from, path if adapter else None)
        self.device = self.model.device.type
        if self.device == "cpu" and sum(p.numel() for p in self.model.parameters()) < SMALL_MODEL:
            # Matrices this small gain nothing from intra-op threads, and on a shared CPU their
            # spin-waits made generation 30x slower (measured on the tiny demo model).
            torch.set_num_threads(1)

    def _ids(self, text: str):
        # The chat template already writes BOS; the tokenizer must not add a second one.
        return self.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids.to(self.device)

    def generate(self, messages: list[dict], max_new_tokens: int) -> str:
        import torch

        torch.manual_seed(0)
        return generate_reply(self.tokenizer, self.model, messages, max_new_tokens).strip()

    def reply_score(self, messages: list[dict]) -> ReplyScore:
        import torch

        prompt = self.tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        full = self.tokenizer.apply_chat_template(messages, tokenize=False)
        if not full.startswith(prompt):
            raise KitError(f"{self.label}: its chat template renders the conversation differently with and "
                           "without the reply, so the reply's tokens cannot be isolated",
                           "use a ChatML-style template (InternLM2-Chat's) in tokenizer_config.json")
        # The reply and its end-of-turn token (what XTuner trains on); the newline after belongs to the
        # next turn. Tokenized apart from the prompt so the prompt's tokens never leak into the count.
        context, reply = self._ids(prompt), self._ids(full[len(prompt):].rstrip())
        ids = torch.cat([context, reply], dim=1)
        with torch.no_grad():
            logits = self.model(input_ids=ids).logits[0, context.shape[1] - 1:-1].float()
        nll = torch.nn.functional.cross_entropy(logits, reply[0], reduction="sum").item()
        return ReplyScore(nll, reply.shape[1])


START_FIX = "start it (e.g. `kit serve --engine transformers --no-ui --base PATH --tuned PATH`, " \
            "`lmdeploy serve api_server ...`) or fix the URL"


class Endpoint:
    """An OpenAI-compatible server. URL may end in `#MODEL` to pick a model; else the first it lists.
    Its key, if it needs one, comes from the variable `key_env` (the CLI's --api-key-env)."""

    def __init__(self, url: str, key_env: str | None = None):
        url, _, model = str(url).partition("#")
        self.server = Server(url, key_env, "--api-key-env", START_FIX)
        self.client = self.server.client
        listed = self.server.check()
        if not (model or listed):
            raise KitError(f"{self.server.url}/models lists no model", f"name the model: {self.server.url}#MODEL")
        self.model = model or listed[0]
        self.label = f"{self.server.url}#{self.model}"
        self._perplexity_error: str | None = None

    def generate(self, messages: list[dict], max_new_tokens: int) -> str:
        import openai

        try:
            reply = self.server.chat(model=self.model, messages=messages, temperature=0,
                                     max_tokens=max_new_tokens, seed=0)
        except openai.APIStatusError as e:
            raise KitError(f"{self.label} refused a chat completion: HTTP {e.status_code} {e.message}",
                           "check the model name after # in the URL") from None
        except BadAnswer as e:
            raise KitError(str(e), "check that the URL is the server's OpenAI API (ending in /v1)") from None
        return reply.strip()

    def reply_score(self, messages: list[dict]) -> ReplyScore:
        """Echo the whole conversation through /v1/completions and sum the reply tokens' log-probs."""
        import openai

        if self._perplexity_error:
            raise PerplexityUnavailable(self._perplexity_error)
        prompt = chat_format.render(messages[:-1], generation_prompt=True)
        text = prompt + messages[-1]["content"] + chat_format.IM_END
        try:
            # max_tokens=1: some servers refuse 0; the generated token lies past len(text) and is skipped.
            with self.server.errors():
                out = self.client.completions.create(model=self.model, prompt=text, echo=True, logprobs=1,
                                                     max_tokens=1, temperature=0)
            lp = out.choices[0].logprobs
        except openai.APIStatusError as e:
            lp, why = None, f"HTTP {e.status_code}"
        else:
            why = "its reply carries no prompt log-probs"
        if lp is None or not lp.text_offset or len(lp.text_offset) != len(lp.token_logprobs or []):
            self._perplexity_error = (f"{self.label} does not return prompt log-probs (/v1/completions with "
                                      f"echo=true, logprobs=1: {why})")
            raise PerplexityUnavailable(self._perplexity_error)
        picked = [v for off, v in zip(lp.text_offset, lp.token_logprobs)
                  if len(prompt) <= off < len(text) and v is not None]
        if not picked or any(math.isnan(v) for v in picked):
            raise PerplexityUnavailable(f"{self.label} gave no log-probs for the reply tokens")
        return ReplyScore(-sum(picked), len(picked))


def open_model(source: str | Path, base: str | Path | None = None, key_env: str | None = None):
    """A local folder, or a URL whose key (if any) is in the variable `key_env`."""
    if is_url(source):
        return Endpoint(str(source), key_env)
    return LocalModel(Path(source), Path(base) if base and not is_url(base) else None)
