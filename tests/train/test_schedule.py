"""The recipe's learning-rate schedule on runs of every length: the warm-up must end at the full rate."""

import pytest
import torch
from mmengine.optim import CosineAnnealingLR, LinearLR
from mmengine.registry import PARAM_SCHEDULERS

from kit.train.schedule import WarmupLR

LR, RATIO, EPOCHS = 2e-4, 0.03, 3  # recipes/bajie.py's GPU settings


def lrs(warmup_cls, epoch_length: int) -> list[float]:
    """The rate at every iteration, schedulers built as mmengine's runner builds the recipe's."""
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    configs = [dict(type=warmup_cls, start_factor=1e-5, by_epoch=True, begin=0, end=RATIO * EPOCHS,
                    convert_to_iter_based=True),
               dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True, begin=RATIO * EPOCHS, end=EPOCHS,
                    convert_to_iter_based=True)]
    schedulers = [PARAM_SCHEDULERS.build(c, default_args=dict(optimizer=opt, epoch_length=epoch_length))
                  for c in configs]
    seen = []
    for _ in range(epoch_length * EPOCHS):
        seen.append(opt.param_groups[0]["lr"])
        for s in schedulers:
            s.step()
    return seen


def test_mmengine_linear_warmup_breaks_short_runs():
    """Why WarmupLR exists: the stock pair stalls at 1e-5 x lr, or refuses to build."""
    assert max(lrs(LinearLR, 21)) < 1e-8  # the H200 DeepSpeed run: 63 iterations at ~2e-9
    with pytest.raises(ValueError, match="end should be larger than begin"):
        lrs(LinearLR, 7)  # the course's 八戒 set on the GPU recipe


@pytest.mark.parametrize("epoch_length", [1, 2, 7, 21, 40, 300])
def test_warmup_reaches_the_full_rate_on_any_run_length(epoch_length):
    seen = lrs(WarmupLR, epoch_length)
    assert seen[0] == pytest.approx(LR * 1e-5)
    reached = max(seen)
    assert reached > 0.7 * LR  # a 3-iteration run reaches 0.75 x lr: the cosine has begun by then
    assert seen.index(reached) <= max(1, int(RATIO * EPOCHS * epoch_length) + 1)  # by the warm-up's end
    assert seen[-1] < seen[seen.index(reached)]  # then the cosine decay
