"""Small model helpers the lab checks share: load a folder, greedy-generate a few tokens."""

from pathlib import Path

from kit.hf_models import generate_reply, load_model
from kit.labs.findings import Missing, need


def load(folder: Path, fix: str):
    """(tokenizer, model) from a Hugging Face folder in its own dtype, on the GPU when there is one."""
    need(folder / "config.json", fix)
    return load_model(folder, dtype="auto")


def chat_once(tokenizer, model, system: str, question: str, max_new_tokens: int = 16) -> str:
    """One greedy reply through the folder's own chat template (what serve and xtuner chat use)."""
    if not tokenizer.chat_template:
        raise Missing("the tokenizer has no chat template", "use an InternLM2-Chat model folder")
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    return generate_reply(tokenizer, model, messages, max_new_tokens)
