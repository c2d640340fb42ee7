"""Training hooks: measured tokens/s and peak memory, and a GPU-slice memory cap.

ThroughputHook times each iteration between CUDA synchronisations (so the figure is GPU work, not
launch queueing), counts the tokens of the batch, and writes one JSON at the end of training:
per-iteration seconds, tokens and loss, the steady-state median, and the run's peak memory.
"""

import json
import statistics
import time
from pathlib import Path

import torch
from mmengine.hooks import Hook
from xtuner.utils import IGNORE_INDEX

from kit.train.launch import fraction_of_card


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class ThroughputHook(Hook):
    # First in, first out: the timed span holds the training step, not the logging or checkpoint hooks.
    priority = "VERY_HIGH"

    def __init__(self, out: str, warmup: int = 5, profile_iters: tuple[int, int] | None = None):
        self.out, self.warmup, self.profile_iters = Path(out), warmup, profile_iters
        self.records: list[dict] = []
        self.peak_allocated = self.peak_reserved = 0
        self._t0 = 0.0
        self._prof = None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self.profile_iters and runner.iter == self.profile_iters[0]:
            self._prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                            torch.profiler.ProfilerActivity.CUDA])
            self._prof.__enter__()
        _sync()
        self._t0 = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        _sync()
        seconds = time.perf_counter() - self._t0
        # mmengine's logger resets the CUDA peak every log interval: keep the running maximum here.
        if torch.cuda.is_available():
            self.peak_allocated = max(self.peak_allocated, torch.cuda.max_memory_allocated())
            self.peak_reserved = max(self.peak_reserved, torch.cuda.max_memory_reserved())
        data = data_batch["data"]
        tokens = int(data["input_ids"].numel())
        # Tokens with a loss (the stock collate's labels are shifted inside the model).
        labels = data["shifted_labels"] if "shifted_labels" in data else data["labels"][:, 1:]
        loss_tokens = int((labels != IGNORE_INDEX).sum())
        loss = float(torch.as_tensor(outputs["loss"]).detach()) if outputs and "loss" in outputs else None
        self.records.append({"iter": runner.iter, "seconds": seconds, "tokens": tokens, "loss_tokens": loss_tokens,
                             "loss": loss})
        if self._prof is not None and runner.iter + 1 == self.profile_iters[1]:
            self._prof.__exit__(None, None, None)
            table = self._prof.key_averages().table(sort_by="self_device_time_total", row_limit=30)
            self.out.with_suffix(".profile.txt").write_text(table, encoding="utf-8")
            self._prof = None

    def after_train(self, runner):
        steady = self.records[self.warmup:] or self.records
        median = statistics.median(r["seconds"] for r in steady)
        tokens = statistics.median(r["tokens"] for r in steady)
        result = {
            "iters": len(self.records),
            "steady_iters": len(steady),
            "seconds_per_iter": median,
            "tokens_per_iter": tokens,
            "tokens_per_s": tokens / median,
            "peak_mem_allocated_gib": self.peak_allocated / 2**30 if torch.cuda.is_available() else None,
            "peak_mem_reserved_gib": self.peak_reserved / 2**30 if torch.cuda.is_available() else None,
            "records": self.records,
        }
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(result, indent=1), encoding="utf-8")


class MemoryCapHook(Hook):
    """Cap this process's GPU memory to a fraction of the card (0.1 of 80 GB) or to `gib` GiB (8).

    Set before training starts; the cap applies to the whole run's peak, the loaded weights included.
    A fraction means another size on another card (0.1 of an H200 is 14 GiB); `gib` does not.
    """

    priority = "VERY_HIGH"

    def __init__(self, fraction: float | None = None, gib: float | None = None):
        self.fraction, self.gib = fraction, gib

    def before_run(self, runner):
        if torch.cuda.is_available():
            torch.cuda.set_per_process_memory_fraction(fraction_of_card(torch, self.gib * 1024) if self.gib
                                                       else self.fraction)
