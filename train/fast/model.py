"""FastSupervisedFinetune: XTuner's SupervisedFinetune with the fast paths patched in.

Same model, same LoRA (XTuner picks the target modules), same loss; what changes is how it runs:
- packed rows attend per document (attention.py) through a FlashAttention varlen kernel;
- RMSNorm and SwiGLU run fused (kernels.py), and LoRA adds into its base GEMM (lora.py);
- the loss never builds the full logits (loss.py);
- frozen non-quantized weights stay in the load dtype (fp16/bf16) instead of peft's fp32 upcast
  (trainable LoRA weights are fp32, as in stock);
- activation checkpointing is non-reentrant and may skip the last layers (`checkpoint_layers`).
"""

from types import MethodType

from peft import get_peft_model
from peft.tuners.lora import LoraLayer
from xtuner.model.utils import find_all_linear_names

from kit.train.xtuner_compat import SupervisedFinetune  # XTuner's class, plus its CPU shim
from kit.train.fast.attention import internlm2_packed_attention_forward, packed_active, set_packed
from kit.train.fast.kernels import rms_norm_forward, swiglu_mlp_forward
from kit.train.fast.loss import linear_cross_entropy
from kit.train.fast.lora import lora_linear_forward


def _patch_causal_mask(model) -> None:
    # Eager InternLM2 builds a float T x T mask per step; packed attention takes cu_seqlens instead.
    stock = model._update_causal_mask

    def update(attention_mask, *args, **kwargs):
        return None if packed_active(model) else stock(attention_mask, *args, **kwargs)

    model._update_causal_mask = update


def patch_internlm2(lm, fuse_lora: bool = True) -> None:
    """Bind the fast forwards onto an InternLM2ForCausalLM's modules (remote code: patch instances)."""
    for module in lm.modules():
        name = type(module).__name__
        if fuse_lora and isinstance(module, LoraLayer) and hasattr(module, "base_layer"):
            module._stock_forward = module.forward
            module.forward = MethodType(lora_linear_forward, module)
        elif name.startswith("InternLM2") and name.endswith("Attention"):
            module._stock_forward = module.forward
            module.forward = MethodType(internlm2_packed_attention_forward, module)
        elif name == "InternLM2MLP":
            module.forward = MethodType(swiglu_mlp_forward, module)
        elif name == "InternLM2RMSNorm":
            module.forward = MethodType(rms_norm_forward, module)
        elif name == "InternLM2Model":
            _patch_causal_mask(module)


def _selective_checkpointing(model, checkpoint_layers: int) -> None:
    """Checkpoint only the first `checkpoint_layers` decoder layers; keep the rest's activations."""
    checkpoint = model._gradient_checkpointing_func

    def run(layer_call, *args):
        if layer_call.__self__.layer_idx < checkpoint_layers:
            return checkpoint(layer_call, *args)
        return layer_call(*args)

    model._gradient_checkpointing_func = run


class FastSupervisedFinetune(SupervisedFinetune):
    def __init__(self, llm, lora=None, *, checkpoint_layers: int | None = None, ce_chunk: int = 1024,
                 fuse_lora: bool = True, use_activation_checkpointing: bool = True, **kwargs):
        # XTuner's own varlen path needs the flash_attn package; ours replaces it.
        kwargs["use_varlen_attn"] = False
        super().__init__(llm, lora=lora, use_activation_checkpointing=use_activation_checkpointing, **kwargs)
        self.ce_chunk = ce_chunk
        lm = self.causal_lm()
        patch_internlm2(lm, fuse_lora)
        if use_activation_checkpointing and checkpoint_layers is not None:
            _selective_checkpointing(lm.model, checkpoint_layers)

    def causal_lm(self):
        return self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm

    def _prepare_for_lora(self, peft_model=None, use_activation_checkpointing=True):
        # Not peft's prepare_model_for_kbit_training: it upcasts every non-4-bit weight (embeddings,
        # the 92,544 x 2,048 head, norms) to fp32, ~1.5 GB more for frozen weights, and sets reentrant
        # checkpointing. The base is frozen by get_peft_model either way.
        if self.lora.target_modules is None:
            self.lora.target_modules = find_all_linear_names(self.llm)
        self.llm = get_peft_model(self.llm, self.lora)
        # peft gives an adapter its base layer's float dtype (bf16 for the output head): keep every
        # trainable weight in fp32, as the stock recipe's upcast does, so small updates are not lost.
        for p in self.llm.parameters():
            if p.requires_grad:
                p.data = p.data.float()
        if use_activation_checkpointing:
            self.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if peft_model is not None:
            from mmengine.runner import load_checkpoint

            load_checkpoint(self, peft_model)

    def compute_loss(self, data, data_samples=None):
        if "shifted_labels" not in data:  # batches from XTuner's default collate: the stock path
            return super().compute_loss(data, data_samples)
        set_packed(data["cu_seqlens"], data["max_seqlen"])
        lm = self.causal_lm()
        hidden = lm.model(input_ids=data["input_ids"], position_ids=data["position_ids"], use_cache=False)[0]
        return {"loss": linear_cross_entropy(hidden, lm.output, data["shifted_labels"], self.ce_chunk)}
