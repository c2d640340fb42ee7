"""Fused RMSNorm and SwiGLU for InternLM2 (remote code, so patched per module instance).

On CUDA with liger-kernel installed, Liger's Triton kernels: one pass each way instead of the 6-8
elementwise kernels (and their saved fp32 copies) of the stock modules. Elsewhere the same math in
plain torch, which is also the reference the tests hold the kernels to.
"""

import torch
import torch.nn.functional as F


def _liger(x: torch.Tensor):
    if not x.is_cuda:
        return None
    try:
        from liger_kernel.ops import rms_norm, swiglu
    except ImportError:
        return None
    return rms_norm, swiglu


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """InternLM2RMSNorm: normalise in fp32, cast back to x's dtype, then scale."""
    liger = _liger(x)
    if liger is not None and weight.dtype == x.dtype:
        return liger[0].LigerRMSNormFunction.apply(x, weight, eps, 0.0, "llama", False)
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    liger = _liger(gate)
    if liger is not None:
        return liger[1].LigerSiLUMulFunction.apply(gate, up)
    return F.silu(gate) * up


def rms_norm_forward(self, hidden_states):
    return rms_norm(hidden_states, self.weight, self.variance_epsilon)


def swiglu_mlp_forward(self, x):
    return self.w2(silu_mul(self.w1(x), self.w3(x)))
