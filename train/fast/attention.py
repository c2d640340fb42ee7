"""Variable-length causal attention for packed rows, and the InternLM2 attention forward that uses it.

Stock XTuner without flash_attn runs InternLM2's eager attention over the whole packed row: a
float T x T score matrix per head, and samples attending to each other. Here each document attends
only to itself, through PyTorch's own FlashAttention varlen kernel on CUDA (no flash_attn wheel
needed) and SDPA with a block-diagonal mask elsewhere (the reference the tests compare against).
"""

import torch
import torch.nn.functional as F

# Document boundaries of the current training step. Set once per step by the model wrapper; read by
# every layer, also when activation checkpointing recomputes layers during backward.
_PACKED: dict = {}


def set_packed(cu_seqlens: torch.Tensor | None, max_seqlen: int = 0) -> None:
    _PACKED.clear()
    if cu_seqlens is not None:
        _PACKED.update(cu_seqlens=cu_seqlens, max_seqlen=max_seqlen)


def packed_active(module: torch.nn.Module) -> bool:
    """Training on a packed step; otherwise (generation, eval) the stock code runs untouched."""
    return module.training and bool(_PACKED)


def _block_causal_mask(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    doc = torch.searchsorted(cu_seqlens[1:].to(torch.long), torch.arange(total, device=cu_seqlens.device),
                             right=True)
    causal = torch.ones(total, total, dtype=torch.bool, device=cu_seqlens.device).tril()
    return causal & (doc[:, None] == doc[None, :])


def varlen_causal_attention(q, k, v, cu_seqlens, max_seqlen):
    """q: (T, H, D); k, v: (T, Hkv, D) with H a multiple of Hkv (GQA); returns (T, H, D)."""
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        from torch.nn.attention.varlen import varlen_attn

        return varlen_attn(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, window_size=(-1, 0))
    mask = _block_causal_mask(cu_seqlens, q.shape[0])
    out = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                                         attn_mask=mask, enable_gqa=True)
    return out.transpose(0, 1)


def _rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def internlm2_packed_attention_forward(self, hidden_states, attention_mask=None, position_ids=None,
                                       past_key_value=None, output_attentions=False, use_cache=False,
                                       cache_position=None, **kwargs):
    """Drop-in for InternLM2Attention.forward (bound per instance; the stock forward is kept)."""
    if not packed_active(self):
        return self._stock_forward(hidden_states, attention_mask=attention_mask, position_ids=position_ids,
                                   past_key_value=past_key_value, output_attentions=output_attentions,
                                   use_cache=use_cache, cache_position=cache_position, **kwargs)
    bsz, q_len, _ = hidden_states.shape
    total = bsz * q_len
    groups, head_dim = self.num_key_value_groups, self.head_dim
    # wqkv's layout is (kv_head, [q_0..q_{g-1}, k, v], head_dim): query head h*g+j uses kv head h,
    # which is the GQA mapping the kernels expect.
    qkv = self.wqkv(hidden_states).view(total, self.num_key_value_heads, groups + 2, head_dim)
    q = qkv[:, :, :groups].reshape(total, self.num_heads, head_dim)
    k, v = qkv[:, :, -2], qkv[:, :, -1]
    if "cos" not in _PACKED:
        # Once per step, not per layer: the dynamic-NTK rotary module syncs with the GPU on every call
        # (torch.max(position_ids)), which would stall the CPU 24-72 times a step.
        cos, sin = self.rotary_emb(v, position_ids)  # (bsz, q_len, D), the stock values
        _PACKED.update(cos=cos.reshape(total, 1, head_dim), sin=sin.reshape(total, 1, head_dim))
    cos, sin = _PACKED["cos"], _PACKED["sin"]
    q = q * cos + _rotate_half(q) * sin
    k = k * cos + _rotate_half(k) * sin
    out = varlen_causal_attention(q, k.contiguous(), v.contiguous(), _PACKED["cu_seqlens"], _PACKED["max_seqlen"])
    return self.wo(out.reshape(bsz, q_len, self.hidden_size)), None, past_key_value
