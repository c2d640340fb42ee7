"""Fast QLoRA training for InternLM2 under XTuner: callables a recipe names, nothing else changes.

An XTuner config can name any callable, so the recipe keeps `xtuner train` and swaps in:
- `FastSupervisedFinetune` (model type): packed variable-length attention, fused RMSNorm/SwiGLU,
  a chunked LoRA-aware linear cross-entropy that never builds the 92,544-wide logits, bf16 weights;
- `packed_collate_fn` (collate_fn): several packed rows per step, flattened into one varlen row;
- `ThroughputHook` / `MemoryCapHook` (custom_hooks): tokens/s, peak memory, a GPU-slice cap.
bench/train_throughput.py measures it against stock XTuner; bench/README.md has the figures.
"""

from kit.train.fast.collate import packed_collate_fn
from kit.train.fast.hooks import MemoryCapHook, ThroughputHook
from kit.train.fast.model import FastSupervisedFinetune

__all__ = ["FastSupervisedFinetune", "MemoryCapHook", "ThroughputHook", "packed_collate_fn"]
