"""Checks a merged model must pass before it is kept: logits, chat template, a generation."""

import torch

from kit.errors import KitError
from kit.hf_models import generate_reply

# Largest |merged - (base + adapter)| logit difference allowed, as a fraction of the largest |logit|,
# both sides computed in fp32: merging rounds W + BA to the target dtype once, so the bound follows
# that dtype's precision. fp32:
# 5e-4, as the demo's run with LoRA on the embedding and the head measured 1.1e-4 on one probe (a wrong
# merge is off by the adapter's whole effect, ~1 relative).
TOLERANCE = {torch.float32: 5e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


@torch.no_grad()
def logits(model, prompts: list[list[int]]) -> list[torch.Tensor]:
    device = next(model.parameters()).device
    return [model(torch.tensor([ids], device=device)).logits[0].float().cpu() for ids in prompts]


def max_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def probe_prompts(tokenizer, persona, n: int = 3) -> list[list[int]]:
    """The logit checks' inputs: the persona's first probe questions as one-turn chats."""
    return [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True)
            for q in persona.probe_questions[:n]]


def adapter_logits(peft_model, prompts: list[list[int]]) -> tuple[list[torch.Tensor], float]:
    """base+adapter logits (PEFT, unmerged), and how far the adapter moves the base's own logits."""
    reference = logits(peft_model, prompts)
    with peft_model.disable_adapter():
        return reference, max_difference(reference, logits(peft_model, prompts))


def check_logits(merged: list[torch.Tensor], reference: list[torch.Tensor], dtype) -> dict:
    """merged vs base+adapter (PEFT, unmerged): within the dtype's tolerance, or a KitError."""
    scale = max(1.0, max(r.abs().max().item() for r in reference))
    diff, bound = max_difference(merged, reference), TOLERANCE[dtype] * scale
    if not diff <= bound:  # also catches NaN
        raise KitError(f"merged model's logits differ from base + adapter by {diff:.3g} "
                       f"(allowed {bound:.3g} in {str(dtype).removeprefix('torch.')})",
                       "the merge is wrong: try --dtype fp32, and check that --base is the model "
                       "the run trained on")
    return {"max_abs_diff": diff, "tolerance": bound}


def generate(model, tokenizer, question: str, max_new_tokens: int = 16) -> str:
    try:
        return generate_reply(tokenizer, model, [{"role": "user", "content": question}], max_new_tokens)
    except Exception as e:
        raise KitError(f"the merged model cannot generate ({type(e).__name__}: {e})",
                       "check the generation_config.json and the remote code of the base") from e
