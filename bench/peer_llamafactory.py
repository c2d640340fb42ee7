"""LLaMA-Factory's SFT on the bench problem, timed. Runs inside LLaMA-Factory's own stack:

    PYTHONPATH=SITE_LF python bench/peer_llamafactory.py CONFIG.yaml RESULT.json

It calls `llamafactory.train.tuner.run_exp(config, callbacks=[timer])`: what `llamafactory-cli train
CONFIG.yaml` runs on one GPU, plus one callback. The callback times each optimizer step between CUDA
synchronisations (as kit's ThroughputHook does) and records its tokens and loss; `Trainer.training_step`
is wrapped only to count each micro-batch's tokens. bench/train_peers.py writes the config.
"""

import json
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml
from transformers import Trainer, TrainerCallback

IGNORE_INDEX = -100
_counts = {"tokens": 0, "real_tokens": 0, "loss_tokens": 0}


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _real_tokens(inputs) -> int:
    """Tokens that are not padding. neat_packing's 2-D mask holds each document's index (1, 2, ...)
    and 0 for padding; its 4-D block-diagonal mask (eager/SDPA attention) masks a padding token's
    own position, so a real token is one whose diagonal entry is 0 (attend)."""
    mask = inputs.get("attention_mask")
    if mask is None:
        return int(inputs["input_ids"].numel())
    if mask.dim() == 4:
        return int((mask[:, 0].diagonal(dim1=-2, dim2=-1) == 0).sum())
    return int((mask != 0).sum())


def _count_tokens(training_step):
    def counted(self, model, inputs, *args, **kwargs):
        _counts["tokens"] += int(inputs["input_ids"].numel())
        _counts["real_tokens"] += _real_tokens(inputs)
        _counts["loss_tokens"] += int((inputs["labels"] != IGNORE_INDEX).sum())
        return training_step(self, model, inputs, *args, **kwargs)

    return counted


class StepTimer(TrainerCallback):
    def __init__(self, out: Path, warmup: int):
        self.out, self.warmup, self.records, self._t0 = out, warmup, [], 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        _sync()
        self._t0 = time.perf_counter()
        _counts.update(tokens=0, real_tokens=0, loss_tokens=0)

    def on_step_end(self, args, state, control, **kwargs):
        _sync()
        self.records.append({"iter": state.global_step - 1, "seconds": time.perf_counter() - self._t0,
                             **_counts, "loss": None})

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and self.records:  # logging_steps=1: this step's mean token loss
            self.records[-1]["loss"] = logs["loss"]

    def on_train_end(self, args, state, control, **kwargs):
        steady = self.records[self.warmup:] or self.records
        median = statistics.median(r["seconds"] for r in steady)
        tokens = statistics.median(r["tokens"] for r in steady)
        cuda = torch.cuda.is_available()
        self.out.write_text(json.dumps({
            "iters": len(self.records), "steady_iters": len(steady), "seconds_per_iter": median,
            "tokens_per_iter": tokens, "tokens_per_s": tokens / median,
            "real_tokens_per_s": statistics.median(r["real_tokens"] for r in steady) / median,
            "peak_mem_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            "peak_mem_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if cuda else None,
            "records": self.records,
        }, indent=1), encoding="utf-8")


def main(config: Path, result: Path) -> None:
    from llamafactory.train.tuner import run_exp

    args = yaml.safe_load(config.read_text(encoding="utf-8"))
    Trainer.training_step = _count_tokens(Trainer.training_step)
    run_exp(args, callbacks=[StepTimer(result, warmup=max(2, args["max_steps"] // 5))])


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
