"""An exponential moving average of the weights, evaluated beside them (`module.ema_decay`).

    python -m resnet_exp module.ema_decay=0.999 module.ema_every_n_steps=4 monitor=val/acc_ema

torch's own `AveragedModel` with its EMA update (`get_ema_multi_avg_fn`'s) keeps the average
(BN's running statistics averaged too, `use_buffers=True`, as torchvision's reference script
does); every `every_n_steps` optimizer steps it moves by `1 - decay` towards the weights, and
until `warmup_steps` it is the weights themselves (torchvision resets it during the lr warm-up).
It is a submodule of the LightningModule: checkpointed with the weights and restored exactly on
resume. Validation and test report it as `val/acc_ema`, `val/loss_ema`, `test/acc_ema`, ...
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from resnet_exp.training.metrics import StageMetrics


def _ema_update(average: list, current: list, _count, decay: float) -> None:
    """torch's `get_ema_multi_avg_fn(decay)` at module level: that one is a closure, which
    pickle refuses, and ddp_spawn pickles the LightningModule into each process it starts
    (`trainer=ddp trainer.strategy=ddp_spawn module.ema_decay=...` failed: tests/combos/)."""
    with torch.no_grad():
        if torch.is_floating_point(average[0]) or torch.is_complex(average[0]):
            torch._foreach_lerp_(average, current, 1 - decay)
        else:  # integer buffers (BN's num_batches_tracked), as torch's own does
            for a, c in zip(average, current, strict=True):
                a.copy_(a * decay + c * (1 - decay))


class EMA(nn.Module):
    def __init__(self, model: nn.Module, decay: float, every_n_steps: int = 1,
                 warmup_steps: int = 0) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            from resnet_exp.core.errors import UserError
            raise UserError(f"module.ema_decay={decay}: give a decay between 0 and 1 (e.g. "
                            "0.999), or null for no average")
        self.decay, self.every_n_steps, self.warmup_steps = decay, every_n_steps, warmup_steps
        self.average = AveragedModel(model, multi_avg_fn=partial(_ema_update, decay=decay),
                                     use_buffers=True)
        self.average.requires_grad_(False)
        self.stage_metrics = nn.ModuleDict({stage: StageMetrics() for stage in ("val", "test")})

    def step(self, model: nn.Module, global_step: int) -> None:
        """After optimizer step `global_step` (counted from 1)."""
        if global_step % self.every_n_steps:
            return
        if global_step <= self.warmup_steps:
            self.average.n_averaged.zero_()  # the next update copies the weights
        self.average.update_parameters(model)

    @torch.no_grad()
    def evaluate(self, stage: str, x: torch.Tensor, y: torch.Tensor, criterion) -> None:
        logits = self.average(x)
        self.stage_metrics[stage].add(criterion(logits, y), logits, y)
