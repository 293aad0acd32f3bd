"""An exponential moving average of the weights, evaluated beside them (`module.ema_decay`).

    python -m resnet_exp module.ema_decay=0.999 module.ema_every_n_steps=4 monitor=val/acc_ema

torch's own `AveragedModel` with `get_ema_multi_avg_fn` keeps the average (BN's running
statistics averaged too, `use_buffers=True`, as torchvision's reference script does); every
`every_n_steps` optimizer steps it moves by `1 - decay` towards the weights, and until
`warmup_steps` it is the weights themselves (torchvision resets it during the lr warm-up). It is
a submodule of the LightningModule: checkpointed with the weights and restored exactly on
resume. Validation and test report it as `val/acc_ema`, `val/loss_ema`, `test/acc_ema`, ...
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy


class EMA(nn.Module):
    def __init__(self, model: nn.Module, decay: float, num_classes: int,
                 every_n_steps: int = 1, warmup_steps: int = 0) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            from resnet_exp.errors import UserError
            raise UserError(f"module.ema_decay={decay}: give a decay between 0 and 1 (e.g. "
                            "0.999), or null for no average")
        self.decay, self.every_n_steps, self.warmup_steps = decay, every_n_steps, warmup_steps
        self.average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay),
                                     use_buffers=True)
        self.average.requires_grad_(False)
        self.stage_metrics = nn.ModuleDict({
            stage: nn.ModuleDict({
                "acc": MulticlassAccuracy(num_classes, average="micro", validate_args=False),
                "loss": MeanMetric(nan_strategy="disable")})
            for stage in ("val", "test")})

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
        metrics = self.stage_metrics[stage]
        metrics["loss"].update(criterion(logits, y).expand(len(y)))
        metrics["acc"].update(logits, y)
