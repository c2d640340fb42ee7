"""A warm-up that survives short runs.

XTuner's recipes give the warm-up in epochs (3 % of the run) and mmengine turns it into iterations with
int(). A run of fewer than ~11 iterations an epoch gets a 0-iteration window, which mmengine refuses
("end should be larger than begin"); up to ~22 it gets a 1-iteration window that never steps past
start_factor, so the whole run trains at 1e-5 x lr (seen on an H200: `kit train --deepspeed zero2`, 21
iterations an epoch, lr 1.9e-09, loss flat at 11.1 for 63 iterations). The course's 八戒 set packs into
about 7 iterations an epoch on the GPU recipe.
"""

from mmengine.optim import LinearLR


class WarmupLR(LinearLR):
    """LinearLR whose epochs-to-iterations conversion leaves it at least two iterations, so that it
    always reaches the full learning rate (at the second iteration when the run is that short)."""

    @classmethod
    def build_iter_from_epoch(cls, *args, begin=0, end=None, by_epoch=True, epoch_length=None, **kwargs):
        assert by_epoch and epoch_length, "WarmupLR converts an epoch-based window: by_epoch=True"
        first = int(begin * epoch_length)
        return cls(*args, begin=first, end=max(first + 2, int(end * epoch_length)), by_epoch=False, **kwargs)
