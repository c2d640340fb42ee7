"""How much GPU memory a QLoRA, LoRA or full fine-tune of an InternLM2-shaped model peaks at.

The plan adds what stays allocated for the whole run (base weights, adapter or full-model training
state, the checkpointed layer inputs) to the larger of the two transient peaks: the logits over the
whole vocabulary at the loss, or one layer recomputed during the backward pass. The terms follow
what XTuner 0.2.0 actually does (below); checked against measured peaks in tests/train and in
bench/results/train_gpu.json (XTuner's stock QLoRA recipe: 6,279 MiB max allocated on an H100).
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

MIB = 2**20
# nf4 stores 4 bits a weight, plus one absmax per 64-weight block; double quant stores that absmax in
# 8 bits with one fp32 constant per 256 blocks (bitsandbytes' defaults).
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
# XTuner calls peft's prepare_model_for_kbit_training for every LoRA run: it upcasts every
# non-quantized weight (embeddings, output head, norms) to fp32.
UPCAST_BYTES = 4
# Trainable weights under AMP: fp32 weight, fp32 gradient, AdamW's two fp32 moments.
TRAINABLE_BYTES = 16
# At the loss, per logit: the fp32 logits InternLM2 returns (`logits.float()`), the log-softmax the
# cross-entropy keeps, and in the backward pass its gradient and the gradient of the logits.
LOGIT_BYTES = 4 + 4 + 4 + 4
# The CUDA caching allocator reserves more than it hands out (block rounding, fragmentation).
RESERVE_HEADROOM = 1.10


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int

    @property
    def kv_dim(self) -> int:
        return self.hidden // self.heads * self.kv_heads

    def linears(self) -> list[tuple[int, int]]:
        """(in, out) of each linear layer of one decoder layer: wqkv, wo, w1, w3, w2."""
        h, i = self.hidden, self.intermediate
        return [(h, h + 2 * self.kv_dim), (h, h), (h, i), (h, i), (i, h)]

    @property
    def linear_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.linears())

    @property
    def embedding_params(self) -> int:
        return 2 * self.vocab * self.hidden  # tok_embeddings + output head (not tied in InternLM2)


INTERNLM2_1_8B = ModelShape(hidden=2048, layers=24, heads=16, kv_heads=8, intermediate=8192, vocab=92544)


def shape_from_config(path: Path) -> ModelShape:
    c = json.loads(Path(path).read_text(encoding="utf-8"))
    return ModelShape(c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"],
                      c.get("num_key_value_heads", c["num_attention_heads"]), c["intermediate_size"],
                      c["vocab_size"])


@dataclass(frozen=True)
class Setup:
    method: str  # "qlora" | "lora" | "full"
    seq_len: int = 2048  # packed row length (max_length)
    batch: int = 1
    lora_r: int = 64
    checkpointing: bool = True  # XTuner's SupervisedFinetune default
    # kit.train.fast (FastSupervisedFinetune): flash varlen attention (no score matrix), a chunked loss
    # (one chunk of logits alive), and frozen embeddings kept in the load dtype instead of peft's fp32.
    fast: bool = False
    ce_chunk: int = 1024
    load_bytes: int = 2  # bytes per frozen weight in the recipe's torch_dtype (fp16; 4 for the CPU fp32 run)


@dataclass(frozen=True)
class Plan:
    items: list[tuple[str, float, str]]  # (term, MiB, why)
    peak_mib: float

    @property
    def reserved_mib(self) -> float:
        return self.peak_mib * RESERVE_HEADROOM

    def fits(self, budget_mib: float) -> bool:
        return self.reserved_mib <= budget_mib


def plan_memory(shape: ModelShape, setup: Setup) -> Plan:
    if setup.method not in ("qlora", "lora", "full"):
        raise ValueError(f"method must be qlora, lora or full, not {setup.method!r}")
    tokens = setup.seq_len * setup.batch
    h = shape.hidden
    items = []
    if setup.method == "full":
        total = shape.linear_params + shape.embedding_params
        items.append(("weights + grads + AdamW", total * TRAINABLE_BYTES,
                      f"{total / 1e9:.2f}B params x 16 B (fp32 weight, grad, two moments)"))
        residual_bytes = 2
    else:
        load = f"fp{8 * setup.load_bytes}"
        per_weight = NF4_BYTES if setup.method == "qlora" else setup.load_bytes
        items.append(("base linear weights", shape.linear_params * per_weight,
                      f"{shape.linear_params / 1e9:.2f}B params x {per_weight:.3f} B "
                      + ("(nf4 + double-quant absmax)" if setup.method == "qlora" else f"({load})")))
        embed_bytes = setup.load_bytes if setup.fast else UPCAST_BYTES
        items.append(("embeddings + output head", shape.embedding_params * embed_bytes,
                      f"{shape.embedding_params / 1e6:.0f}M params " +
                      (f"kept in {load}" if setup.fast else "upcast to fp32 by peft")))
        adapter = shape.layers * setup.lora_r * sum(a + b for a, b in shape.linears())
        items.append(("LoRA adapter + AdamW", adapter * TRAINABLE_BYTES,
                      f"{adapter / 1e6:.1f}M params (r={setup.lora_r}) x 16 B"))
        # peft's fp32 embedding makes the residual stream fp32 under autocast; the fast path's is fp16.
        residual_bytes = setup.load_bytes if setup.fast else 4
    layer_inputs = shape.layers * tokens * h * residual_bytes
    if setup.checkpointing:
        items.append(("checkpointed layer inputs", layer_inputs,
                      f"{shape.layers} layers x {tokens} tokens x {h} x {residual_bytes} B"))
    # One decoder layer's activations while it is recomputed and back-propagated: eager attention
    # (fp16 scores, fp32 softmax, fp16 probabilities) and the SwiGLU MLP's four intermediate tensors.
    attention = 0 if setup.fast else shape.heads * setup.batch * setup.seq_len**2 * (2 + 4 + 2)
    layer = attention + tokens * (4 * shape.intermediate * 2 + 12 * h * residual_bytes)
    logits = min(tokens, setup.ce_chunk if setup.fast else tokens) * shape.vocab * LOGIT_BYTES
    if not setup.checkpointing:
        items.append(("all layers' activations", shape.layers * layer, "no activation checkpointing"))
        layer = 0
    logit_rows = min(tokens, setup.ce_chunk) if setup.fast else tokens
    transient = ("logits at the loss", logits, f"{logit_rows} tokens x {shape.vocab} vocab x 16 B") \
        if logits >= layer else ("one layer recomputed", layer, "attention scores + MLP intermediates")
    items.append(transient)
    items = [(name, b / MIB, why) for name, b, why in items]
    return Plan(items, sum(mib for _, mib, _ in items))


def budget_mib(gpu_fraction: float | None, gpu_total_mib: float | None,
               gpu_memory_mib: float | None = None) -> float | None:
    """The memory a run may use: an absolute cap, a fraction of the GPU (a slice), or all of it."""
    if gpu_total_mib is None:
        return None
    if gpu_memory_mib is not None:
        return min(gpu_memory_mib, gpu_total_mib)
    return gpu_total_mib * (gpu_fraction or 1.0)


_UNITS_MIB = {"gib": 1024, "gb": 1e9 / 2**20, "mib": 1, "mb": 1e6 / 2**20}


def parse_memory_mib(text: str) -> float:
    """'8GiB' -> 8192.0 MiB; GiB, GB, MiB and MB, case-insensitive. ValueError names the forms."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*", text)
    if not m or m.group(2).lower() not in _UNITS_MIB or float(m.group(1)) <= 0:
        raise ValueError(f"{text!r}: give a size with its unit, e.g. 8GiB, 8GB or 7500MiB")
    return float(m.group(1)) * _UNITS_MIB[m.group(2).lower()]


def render(plan: Plan, budget: float | None) -> str:
    lines = [f"  {name:<28}{mib:>9,.0f} MiB  {why}" for name, mib, why in plan.items]
    lines.append(f"  {'peak (allocated)':<28}{plan.peak_mib:>9,.0f} MiB")
    lines.append(f"  {'with allocator headroom':<28}{plan.reserved_mib:>9,.0f} MiB  "
                 f"x{RESERVE_HEADROOM:.2f} (reserved > allocated)")
    if budget is not None:
        verdict = "fits" if plan.fits(budget) else "does NOT fit"
        lines.append(f"  {'budget':<28}{budget:>9,.0f} MiB  -> {verdict}")
    return "\n".join(lines)
