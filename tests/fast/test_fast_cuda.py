"""The CUDA paths of kit.train.fast against their torch references (GPU machine only).

FlashAttention varlen (GQA, causal, per document), Liger RMSNorm and SwiGLU, and the chunked loss in
bf16: forward and gradients within bf16 tolerance of the fp32 reference.
"""

import pytest
import torch
import torch.nn.functional as F

from kit.train.fast import kernels
from kit.train.fast.attention import varlen_causal_attention
from kit.train.fast.loss import linear_cross_entropy

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def _grads(fn, *xs):
    xs = [x.detach().clone().requires_grad_() for x in xs]
    out = fn(*xs)
    out.backward(torch.ones_like(out) if out.dim() else None)
    return out.detach(), [x.grad for x in xs]


def test_flash_varlen_matches_masked_sdpa():
    torch.manual_seed(0)
    lengths = [700, 1, 300, 1047]
    total = sum(lengths)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    q = torch.randn(total, 16, 128, device="cuda")
    k, v = torch.randn(total, 8, 128, device="cuda"), torch.randn(total, 8, 128, device="cuda")
    out, grads = _grads(lambda q, k, v: varlen_causal_attention(q, k, v, cu, max(lengths)),
                        q.bfloat16(), k.bfloat16(), v.bfloat16())
    ref, ref_grads = _grads(lambda q, k, v: varlen_causal_attention(q, k, v, cu, max(lengths)), q, k, v)
    assert _rel(out, ref) < 1e-2
    for g, r in zip(grads, ref_grads):
        assert _rel(g, r) < 2e-2


def test_liger_norm_and_swiglu_match_torch():
    pytest.importorskip("liger_kernel")
    torch.manual_seed(0)
    x, w = torch.randn(4096, 2048, device="cuda"), 1 + 0.1 * torch.randn(2048, device="cuda")
    fused, g_fused = _grads(lambda x, w: kernels.rms_norm(x, w, 1e-5), x.bfloat16(), w.bfloat16())
    ref, g_ref = _grads(lambda x, w: kernels.rms_norm(x, w, 1e-5), x, w)  # fp32: the torch path
    assert _rel(fused, ref) < 1e-2 and all(_rel(a, b) < 2e-2 for a, b in zip(g_fused, g_ref))
    a, b = torch.randn(4096, 8192, device="cuda"), torch.randn(4096, 8192, device="cuda")
    fused, g_fused = _grads(kernels.silu_mul, a.bfloat16(), b.bfloat16())
    ref, g_ref = _grads(lambda a, b: F.silu(a) * b, a, b)
    assert _rel(fused, ref) < 1e-2 and all(_rel(x, y) < 2e-2 for x, y in zip(g_fused, g_ref))


def test_chunked_loss_bf16_matches_fp32_full_logits():
    torch.manual_seed(0)
    head = torch.nn.Linear(2048, 92544, bias=False, device="cuda").requires_grad_(False)
    h = torch.randn(3000, 2048, device="cuda")
    labels = torch.randint(0, 92544, (3000,), device="cuda")
    labels[:1000] = -100
    head16 = torch.nn.Linear(2048, 92544, bias=False, device="cuda", dtype=torch.bfloat16).requires_grad_(False)
    head16.weight.copy_(head.weight)
    loss, (g,) = _grads(lambda h: linear_cross_entropy(h, head16, labels), h.bfloat16())
    ref, (g_ref,) = _grads(lambda h: F.cross_entropy(head(h), labels, ignore_index=-100), h)
    assert abs(loss.item() - ref.item()) / ref.item() < 1e-2 and _rel(g, g_ref) < 2e-2
