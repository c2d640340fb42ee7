"""A leaner forward for peft's LoRA layers (plain and 4-bit) with one active adapter.

peft computes base(x).clone() + lora_B(lora_A(dropout(x))) * scaling: a defensive copy of the base
output, then a multiply and an add over the full (tokens x out_features) output, and their
backward passes. Folding the scaling into B and the add into the matmul's accumulator
(addmm(base, h, (s*B)^T)) leaves one GEMM and no extra passes; same function, one rounding less.
"""

import torch
import torch.nn.functional as F


def lora_linear_forward(self, x, *args, **kwargs):
    names = self.active_adapters
    if args or kwargs or self.disable_adapters or self.merged or len(names) != 1 or names[0] not in self.lora_A \
            or self.use_dora[names[0]]:
        return self._stock_forward(x, *args, **kwargs)
    name = names[0]
    result = self.base_layer(x)
    dtype = result.dtype
    h = F.linear(self.lora_dropout[name](x).to(dtype), self.lora_A[name].weight.to(dtype))
    scaled_b = (self.lora_B[name].weight * self.scaling[name]).to(dtype)
    out = torch.addmm(result.reshape(-1, result.shape[-1]), h.reshape(-1, h.shape[-1]), scaled_b.t())
    return out.view_as(result)
