"""A local Hugging Face model folder, loaded as every stage loads it, and one greedy chat reply from it.

Eval, the lab checks, the merge check and the embedded server all load through `load_model`, so a
model behaves the same wherever it is asked (remote code, dtype, device, eval mode).
"""

from pathlib import Path

from kit import chat_format


def load_model(path: Path, adapter: Path | None = None, dtype=None, device: str | None = None):
    """(tokenizer, model in eval mode) from the folder `path`, with the PEFT adapter folder `adapter`
    merged in if given.

    dtype: a torch dtype or "auto" (the folder's own); None: bfloat16 on a GPU, float32 on the CPU.
    device: None means the GPU when there is one. The tokenizer is the adapter folder's when it has one
    (the run's persona template), else the model folder's.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
    has_tokenizer = adapter is not None and (Path(adapter) / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(adapter if has_tokenizer else path, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True, torch_dtype=dtype)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return tokenizer, model.to(device).eval()


def generate_reply(tokenizer, model, messages: list[dict], max_new_tokens: int) -> str:
    """The greedy reply to `messages` through the tokenizer's own chat template, ending at a turn's end."""
    import torch

    # apply_chat_template tokenizes without adding a BOS: the template already writes it.
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True).to(model.device)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=chat_format.stop_ids(tokenizer, model.generation_config))
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
