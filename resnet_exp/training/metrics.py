"""The numbers a run records: each stage's loss and accuracy over an epoch, summed on the device
(`StageMetrics`, logged once per epoch by `module.Classifier`), the last epoch's as metrics.json's
`final/*` (`epoch_metrics`), and the parameter counts (`count_parameters`).

A training step adds to the sums with a few in-place tensor ops and reads nothing back from the
device; Lightning computes and resets them at the epoch's end, summed over the processes under
DDP (torchmetrics' `compute`). torchmetrics' MulticlassAccuracy and MeanMetric give the same
numbers (tests/test_module.py) at a higher cost per step, for argument checks, casts and four
stat-score sums: measured in docs/speed.md#per-step.

>>> import torch
>>> m = StageMetrics(topk=(1, 5))
>>> logits = torch.eye(6)[[0, 1, 2, 3]] * 9  # 4 images of 6 classes, scores peaked at 0..3
>>> m.add(torch.tensor(0.5), logits, torch.tensor([0, 1, 5, 4]))
>>> {name: round(float(metric.compute()), 2) for name, metric in m.items()}
{'loss': 0.5, 'acc': 0.5, 'acc_top5': 1.0}
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import Metric


class MeanLoss(Metric):
    """The loss per image over the epoch: each batch's mean loss weighted by its size, so a short
    last batch counts as much as its images."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("images", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, loss: torch.Tensor, images: int) -> None:
        # in place: no allocation, and no attribute assignment (nn.Module's is slow)
        self.total.add_(loss.detach(), alpha=images)
        self.images.add_(images)

    def compute(self) -> torch.Tensor:
        return self.total / self.images


class Accuracy(Metric):
    """Top-k accuracy over the epoch: the share of images whose label is among their k highest
    scores."""

    full_state_update = False

    def __init__(self, k: int = 1) -> None:
        super().__init__()
        self.k = k
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("images", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        if self.k == 1:
            hits = logits.argmax(1) == labels
        else:
            hits = (logits.topk(self.k, 1).indices == labels[:, None]).any(1)
        self.correct.add_(hits.sum())
        self.images.add_(len(labels))

    def compute(self) -> torch.Tensor:
        return self.correct / self.images


class StageMetrics(nn.ModuleDict):
    """One stage's `loss`, `acc` and (with 5 in `topk`) `acc_top5`, by the names they are
    logged under."""

    def __init__(self, topk: tuple[int, ...] = (1,)) -> None:
        super().__init__({"loss": MeanLoss(),
                          **{"acc" if k == 1 else f"acc_top{k}": Accuracy(k) for k in topk}})

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """One batch: its mean loss, its scores and its labels (class indices; soft targets
        are the caller's to reduce)."""
        logits = logits.detach()
        for name, metric in self.items():
            if name == "loss":
                metric.update(loss, len(labels))
            else:
                metric.update(logits, labels)

    def partial_sums(self) -> dict[str, dict[str, torch.Tensor]]:
        """The sums so far, for a checkpoint written mid-epoch."""
        return {name: dict(metric.metric_state) for name, metric in self.items()}

    def resume(self, sums: dict[str, dict[str, torch.Tensor]]) -> None:
        """Add the sums `partial_sums` gave: the resumed epoch's numbers then cover its batches
        from before the checkpoint too. Sums of another layout (metrics this class did not
        write) are left out, and the epoch's numbers cover the batches after the resume."""
        for name, metric in self.items():
            state = sums.get(name, {})
            if set(state) == set(metric.metric_state):
                metric.merge_state({k: v.to(metric.device) for k, v in state.items()})


def epoch_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """The train/val metrics logged for the last epoch, keyed as metrics.json's `final/*`."""
    return {f"final/{key.removesuffix('_epoch')}": float(value)
            for key, value in trainer.logged_metrics.items()
            if key.startswith(("train/", "val/")) and not key.endswith("_step")}


def count_parameters(model: nn.Module) -> dict[str, int]:
    return {
        "params/total": sum(p.numel() for p in model.parameters()),
        "params/trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
