"""`python -m kit.train.launch XTUNER_TRAIN_ARGS...`: xtuner.tools.train inside a GPU slice.

`kit train` starts this instead of xtuner.tools.train itself (also under torchrun, once per rank) so
that KIT_GPU_FRACTION (a share of the card) or KIT_GPU_MEMORY_MIB (an absolute size) can cap the
CUDA allocator as a 10% A100 slice would, and so that the run's
peak memory is printed for `kit train` to compare with its memory plan. It also lets --resume load
mmengine's checkpoints under torch >= 2.6.
"""

import json
import os
import runpy
import sys

PEAK_PREFIX = "kit-train-peak: "


def _record_peaks_across_resets(torch) -> dict[str, int]:
    """mmengine's logger resets CUDA's peak-memory counters at every log line; keep the true peak."""
    peaks = {"allocated": 0, "reserved": 0}
    reset = torch.cuda.reset_peak_memory_stats

    def recording_reset(device=None):
        peaks["allocated"] = max(peaks["allocated"], torch.cuda.max_memory_allocated(device))
        peaks["reserved"] = max(peaks["reserved"], torch.cuda.max_memory_reserved(device))
        reset(device)

    torch.cuda.reset_peak_memory_stats = recording_reset
    return peaks


def cap_fraction(torch, rank: int) -> float | None:
    """The allocator cap as a share of this rank's card, from KIT_GPU_MEMORY_MIB or KIT_GPU_FRACTION."""
    if not torch.cuda.is_available():
        return None
    mib, fraction = os.environ.get("KIT_GPU_MEMORY_MIB"), os.environ.get("KIT_GPU_FRACTION")
    if mib:
        return fraction_of_card(torch, float(mib), rank)
    return float(fraction) if fraction else None


def fraction_of_card(torch, mib: float, rank: int = 0) -> float:
    """An absolute cap as the share of this rank's card that set_per_process_memory_fraction takes."""
    return min(1.0, mib * 2**20 / torch.cuda.get_device_properties(rank).total_memory)


def main(argv: list[str]) -> None:
    import torch

    rank = int(os.environ.get("LOCAL_RANK", 0))
    fraction = cap_fraction(torch, rank)
    if fraction:
        torch.cuda.set_per_process_memory_fraction(fraction, rank)
    if "--resume" in argv:
        # torch >= 2.6 unpickles weights only by default, and mmengine's checkpoints also hold its
        # log buffers; the file is this run's own checkpoint, so the full unpickler is safe here.
        os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    peaks = _record_peaks_across_resets(torch)
    sys.argv = ["xtuner.tools.train", *argv]
    runpy.run_module("xtuner.tools.train", run_name="__main__", alter_sys=True)
    if torch.cuda.is_available():
        total = torch.cuda.get_device_properties(rank).total_memory
        print(PEAK_PREFIX + json.dumps({
            "rank": rank,
            "max_allocated_mib": max(peaks["allocated"], torch.cuda.max_memory_allocated(rank)) / 2**20,
            "max_reserved_mib": max(peaks["reserved"], torch.cuda.max_memory_reserved(rank)) / 2**20,
            "gpu_total_mib": total / 2**20, "fraction": fraction,
        }), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
