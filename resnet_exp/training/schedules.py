"""Linear learning-rate warmup in front of any torch scheduler (conf/scheduler/warmup_*.yaml).

Goyal et al. 2017 (arXiv 1706.02677, sec 2.2) ramp the rate up linearly over the first 5 epochs,
then "go back to the original learning rate schedule". Here the ramp multiplies that schedule
(torch's `ChainedScheduler`), so the schedule keeps its own clock: milestones and `T_max` mean what
they mean without warmup, and a step schedule is exactly the paper's. torchvision's reference
recipe instead starts the main schedule after the warmup (`SequentialLR`, `T_max = epochs -
warmup`); for a cosine the two differ by under 1% of the rate in the first 5 of 90 epochs.
"""

from __future__ import annotations

from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import ChainedScheduler, LinearLR, LRScheduler


def warmup(
    optimizer: Optimizer,
    after: Callable[[Optimizer], LRScheduler] | None = None,
    warmup: int = 5,
    start_factor: float = 0.01,
) -> LRScheduler:
    """The rate times `start_factor` at step 0, rising linearly to the full rate at step `warmup`
    (steps are the scheduler's interval: epochs or optimizer steps), times `after`'s schedule.

    start_factor 0.01 is torchvision's `--lr-warmup-decay` default; `after` None keeps the rate
    constant after the warmup.
    """
    if warmup <= 0:
        return after(optimizer) if after is not None else LinearLR(optimizer, 1.0, total_iters=1)
    ramp = LinearLR(optimizer, start_factor=start_factor, end_factor=1.0, total_iters=warmup)
    if after is None:
        return ramp
    return ChainedScheduler([ramp, after(optimizer)], optimizer=optimizer)
