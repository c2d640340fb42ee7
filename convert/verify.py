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


# A half-precision merge must also keep this share of what the adapter does to the logits: a gentle
# run's updates can be finer than fp16/bf16 holds beside the base's weights, and W + BA then rounds
# back towards W (the bound above alone let a tiny-model merge lose the whole of a small adapter).
ADAPTER_KEPT = 0.9


class RoundingLoss(KitError):
    """A half-precision merge that lost part of the adapter: W + BA rounded to fp16/bf16 is not W + BA."""


def check_logits(merged: list[torch.Tensor], reference: list[torch.Tensor], dtype, effect: float) -> dict:
    """merged vs base+adapter (PEFT, unmerged): within the dtype's tolerance, or a KitError.

    Both sides are computed in fp32, so in fp16/bf16 a miss is the rounding of W + BA (measured on an
    H100: bf16 dropped 2.84 of a DeepSpeed run's 9.69 effect on the logits; fp32 kept all of it).
    effect: how far the adapter moves the base's logits.
    """
    scale = max(1.0, max(r.abs().max().item() for r in reference))
    diff, bound = max_difference(merged, reference), TOLERANCE[dtype] * scale
    name = str(dtype).removeprefix("torch.")
    if dtype != torch.float32:
        bound = min(bound, (1 - ADAPTER_KEPT) * effect)
    if diff <= bound:
        return {"max_abs_diff": diff, "tolerance": bound}
    if dtype != torch.float32 and diff == diff:  # NaN (an fp16 overflow) is a broken merge
        raise RoundingLoss(f"rounding base + adapter to {name} moves the logits by {diff:.3g}, more "
                           f"than {bound:.3g} (the smaller of {TOLERANCE[dtype]:.0%} of the largest logit and "
                           f"{1 - ADAPTER_KEPT:.0%} of the adapter's own {effect:.3g}): the adapter's "
                           f"updates are finer than {name} holds beside the base's weights",
                           "merge with --dtype fp32 (twice the size), or serve base + adapter unmerged "
                           "(kit serve --engine lmdeploy with the adapter kit merge records)")
    raise KitError(f"merged model's logits differ from base + adapter by {diff:.3g} "
                   f"(allowed {bound:.3g} in {name})",
                   "the merge is wrong: try --dtype fp32, and check that --base is the model "
                   "the run trained on")


def generate(model, tokenizer, question: str, max_new_tokens: int = 16) -> str:
    try:
        return generate_reply(tokenizer, model, [{"role": "user", "content": question}], max_new_tokens)
    except Exception as e:
        raise KitError(f"the merged model cannot generate ({type(e).__name__}: {e})",
                       "check the generation_config.json and the remote code of the base") from e
