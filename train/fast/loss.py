"""Cross-entropy over the 92,544-token vocabulary without materialising the logits.

Stock computes logits for every position (T x 92,544, fp16), upcasts them to fp32 and keeps several
copies for backward: at T=2048 that is most of the recipe's peak memory. Here, only positions with a
label get logits, in chunks; each chunk's loss and gradients are finished in the forward pass, so
at most one chunk of logits is alive. XTuner also puts LoRA on the output head (find_all_linear_names
keeps `output`), so the head is y = h W^T + s * z B^T with z = lora_A(dropout(h)): the gradients of
h, z and B come out of the same chunk loop; W is frozen.
"""

import torch

from xtuner.utils import IGNORE_INDEX


class _ChunkedLinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, z, weight, lora_b, scaling, targets, chunk):
        n = h.shape[0]
        grad_h = torch.empty_like(h)
        grad_z = torch.empty_like(z) if z is not None else None
        grad_b = torch.zeros(lora_b.shape, dtype=torch.float32, device=h.device) if lora_b is not None else None
        w = weight.to(h.dtype)
        b = lora_b.to(h.dtype) if lora_b is not None else None
        loss = torch.zeros((), dtype=torch.float32, device=h.device)
        for i in range(0, n, chunk):
            hc, tc = h[i:i + chunk], targets[i:i + chunk]
            logits = hc @ w.t()
            if z is not None:
                logits = logits + (scaling * z[i:i + chunk]) @ b.t()
            logits = logits.float()
            lse = torch.logsumexp(logits, dim=-1)
            loss += (lse - logits.gather(1, tc[:, None]).squeeze(1)).sum()
            # d(mean CE)/d(logits) = (softmax - onehot) / n, written over the logits buffer.
            grad = logits.sub_(lse[:, None]).exp_()
            grad[torch.arange(len(tc), device=h.device), tc] -= 1.0
            grad = grad.div_(n).to(h.dtype)
            grad_h[i:i + chunk] = grad @ w
            if z is not None:
                grad_z[i:i + chunk] = scaling * (grad @ b)
                grad_b += scaling * (grad.t() @ z[i:i + chunk]).float()
        ctx.save_for_backward(grad_h, grad_z, grad_b)
        return loss / n

    @staticmethod
    def backward(ctx, grad_loss):
        grad_h, grad_z, grad_b = ctx.saved_tensors
        scale = lambda g: None if g is None else g * grad_loss.to(g.dtype)  # noqa: E731
        return scale(grad_h), scale(grad_z), None, scale(grad_b), None, None, None


def _head_parts(head: torch.nn.Module, h: torch.Tensor):
    """(W, z, B, scaling) of a plain or LoRA-wrapped output Linear (one active adapter)."""
    if not hasattr(head, "lora_A") or getattr(head, "disable_adapters", False) or getattr(head, "merged", False):
        return getattr(head, "base_layer", head).weight, None, None, 0.0
    name = head.active_adapters[0]
    z = head.lora_A[name](head.lora_dropout[name](h))
    return head.base_layer.weight, z, head.lora_B[name].weight, head.scaling[name]


def linear_cross_entropy(hidden: torch.Tensor, head: torch.nn.Module, shifted_labels: torch.Tensor,
                         chunk: int = 1024) -> torch.Tensor:
    """Mean next-token CE of head(hidden) against labels already shifted (IGNORE_INDEX = no loss)."""
    h = hidden.reshape(-1, hidden.shape[-1])
    labels = shifted_labels.reshape(-1)
    keep = (labels != IGNORE_INDEX).nonzero().squeeze(1)
    h = h.index_select(0, keep)
    weight, z, lora_b, scaling = _head_parts(head, h)
    if weight.requires_grad:
        raise ValueError("linear_cross_entropy expects a frozen output weight (LoRA/QLoRA)")
    if z is not None:
        z = z.to(h.dtype)
    return _ChunkedLinearCE.apply(h, z, weight, lora_b, scaling, labels.index_select(0, keep), chunk)
