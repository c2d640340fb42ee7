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
    return decode_whole_chars(tokenizer, out[0, inputs["input_ids"].shape[1]:].tolist())


def decode_whole_chars(tokenizer, ids: list[int]) -> str:
    """The text of generated `ids` up to its last whole character. A byte-fallback tokenizer (InternLM2's
    sentencepiece: `<0xE4><0xBD><0xA0>` is 你) spells a character outside its vocabulary in up to four
    byte tokens; cut after some of them (max_tokens, or a stream between tokens), the text ends in
    U+FFFD (for the cut bytes, or with tokenizers' ByteFallback for the whole run of bytes). Up to three
    trailing tokens are left out until their character completes; a U+FFFD that fewer tokens do not
    remove (bytes no character can complete) is kept, as the model's own output."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if text.endswith("\ufffd"):
        for k in range(1, min(3, len(ids)) + 1):
            if not (shorter := tokenizer.decode(ids[:-k], skip_special_tokens=True)).endswith("\ufffd"):
                return shorter
    return text
