"""Small model helpers the lab checks share: load a folder, greedy-generate a few tokens."""

from pathlib import Path

from kit.labs.findings import Missing, need


def load(folder: Path, fix: str):
    """(tokenizer, model) from a Hugging Face folder, on the GPU when there is one."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    need(folder / "config.json", fix)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, torch_dtype="auto")
    return tokenizer, model.to("cuda" if torch.cuda.is_available() else "cpu").eval()


def chat_once(tokenizer, model, system: str, question: str, max_new_tokens: int = 16) -> str:
    """One greedy reply through the folder's own chat template (what serve and xtuner chat use)."""
    import torch

    if not tokenizer.chat_template:
        raise Missing("the tokenizer has no chat template", "use an InternLM2-Chat model folder")
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True).to(model.device)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

