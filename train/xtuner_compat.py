"""XTuner's own classes, imported through kit so that a small CPU shim is in place first.

XTuner 0.2.0's SupervisedFinetune asks `torch.cpu.is_bf16_supported()` on a host without CUDA, and
torch has no such function: every CPU run (the tiny model, `xtuner convert pth_to_hf` on CPU) dies.
Recipes import SupervisedFinetune from here, so the shim is installed by whatever builds the model
(`xtuner train`, `xtuner convert`, kit) without patching installed files. On a GPU it changes nothing.
"""

import torch

if not hasattr(torch.cpu, "is_bf16_supported"):
    # CPU training in kit is fp32; answering False keeps XTuner on its fp16 branch, which the CPU
    # recipe overrides with an explicit torch_dtype anyway.
    torch.cpu.is_bf16_supported = lambda: False

from xtuner.model import SupervisedFinetune  # noqa: E402  (after the shim, on purpose)

__all__ = ["SupervisedFinetune"]
