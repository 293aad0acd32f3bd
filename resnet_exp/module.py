"""The LightningModule every study trains: cross-entropy, accuracy, optimizer and schedule."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

STAGES = ("train", "val", "test")


def parameter_groups(model: nn.Module, weight_decay_bn_bias: bool) -> list[dict]:
    """One group, or two with the BN and bias parameters kept out of weight decay.

    Decaying BN scales and biases only shrinks them for no regularisation benefit
    (Goyal et al. 2017, arXiv 1706.02677, sec 5.1; torchvision's `--norm-weight-decay 0`).
    """
    if weight_decay_bn_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_norm = isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm,
                                          nn.LayerNorm))
            (no_decay if is_norm or name == "bias" else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def count_parameters(model: nn.Module) -> dict[str, int]:
    return {
        "params/total": sum(p.numel() for p in model.parameters()),
        "params/trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


class Classifier(pl.LightningModule):
    """Image classification with top-1 (and top-5 from 10 classes up) accuracy per stage.

    `optimizer` is a partial taking the parameter groups; `scheduler` is Lightning's scheduler
    dict (`interval`, `frequency`, `monitor`) whose `scheduler` entry is a partial taking the
    optimizer, or None.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: Callable[[Iterable], torch.optim.Optimizer],
        scheduler: dict | None = None,
        label_smoothing: float = 0.0,
        weight_decay_bn_bias: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.weight_decay_bn_bias = weight_decay_bn_bias
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        # The prefix of test metrics: train.py tests the best checkpoint as "test" and the last
        # one as "test_last", so both land in the logs under their own names.
        self.test_prefix = "test"
        topk = {"acc": 1, "acc_top5": 5} if num_classes >= 10 else {"acc": 1}
        # Keyed "<stage>_metrics": nn.Module already has an attribute named `train`.
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_metrics": nn.ModuleDict(
                    {
                        name: MulticlassAccuracy(num_classes, top_k=k, average="micro")
                        for name, k in topk.items()
                    }
                )
                for stage in STAGES
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.criterion(logits, y)
        prefix = self.test_prefix if stage == "test" else stage
        on_step = stage == "train"
        # Loss goes to the progress bar every refresh; accuracy is accumulated on the device and
        # read once per epoch, so no step waits on a host-device sync for logging.
        self.log(f"{prefix}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True,
                 batch_size=len(y))
        for name, metric in self.metrics[f"{stage}_metrics"].items():
            metric.update(logits.detach(), y)
            self.log(f"{prefix}/{name}", metric, on_step=False, on_epoch=True,
                     prog_bar=name == "acc", batch_size=len(y))
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        optimizer = self.optimizer(parameter_groups(self.model, self.weight_decay_bn_bias))
        if not self.scheduler or self.scheduler.get("scheduler") is None:
            return optimizer
        lr_scheduler = dict(self.scheduler)
        lr_scheduler["scheduler"] = lr_scheduler["scheduler"](optimizer)
        return {"optimizer": optimizer, "lr_scheduler": lr_scheduler}
