"""The LightningModule every study trains: cross-entropy, accuracy, optimizer and schedule."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import MulticlassAccuracy

from resnet_exp.ema import EMA
from resnet_exp.speed import channels_last_pays

STAGES = ("train", "val", "test")


def parameter_groups(model: nn.Module, weight_decay_bn_bias: bool) -> list[dict]:
    """One group, or two with the BN and bias parameters kept out of weight decay.

    Decaying BN scales and biases only shrinks them for no regularisation benefit
    (Goyal et al. 2017, arXiv 1706.02677, sec 5.1; torchvision's `--norm-weight-decay 0`).
    """
    if weight_decay_bn_bias:
        return split_by_lr_scale([{"params": [p for p in model.parameters() if p.requires_grad]}])
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_norm = isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm,
                                          nn.LayerNorm))
            (no_decay if is_norm or name == "bias" else decay).append(p)
    return split_by_lr_scale([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])


def split_by_lr_scale(groups: list[dict]) -> list[dict]:
    """Split each group by its parameters' `lr_scale` attribute (set by models/transfer.py: a
    fine-tuned backbone learns slower than its new head); a split-off group carries `lr_scale`,
    which `Classifier.configure_optimizers` multiplies into the optimizer's lr."""
    split = []
    for group in groups:
        by_scale: dict[float, list] = {}
        for p in group["params"]:
            by_scale.setdefault(getattr(p, "lr_scale", 1.0), []).append(p)
        split += [group | {"params": params} | ({"lr_scale": scale} if scale != 1.0 else {})
                  for scale, params in by_scale.items()] or [group]
    return split


def count_parameters(model: nn.Module) -> dict[str, int]:
    return {
        "params/total": sum(p.numel() for p in model.parameters()),
        "params/trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def epoch_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """The train/val metrics logged for the last epoch, keyed as metrics.json's `final/*`."""
    return {f"final/{key.removesuffix('_epoch')}": float(value)
            for key, value in trainer.logged_metrics.items()
            if key.startswith(("train/", "val/")) and not key.endswith("_step")}


class Classifier(pl.LightningModule):
    """Image classification with top-1 (and top-5 from 10 classes up) accuracy per stage.

    With batch mixing (augmentation.mixup_alpha/cutmix_alpha) the training targets are soft;
    the loss takes them as they are and train/acc counts a prediction of the label with the
    larger share as right (validation and test are never mixed).

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
        channels_last: bool | str = "auto",
        compile: bool | str = False,
        ema_decay: float | None = None,
        ema_every_n_steps: int = 1,
        ema_warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        self.model = model
        # the weights' moving average, evaluated beside them (resnet_exp/ema.py); copied before
        # the network is compiled or laid out
        self.ema = (EMA(model, ema_decay, num_classes, ema_every_n_steps, ema_warmup_steps)
                    if ema_decay is not None else None)
        # channels_last and compile: speed options, measured in resnet_exp/speed.py's docstring;
        # "auto" is decided in setup, once the device and precision are known
        self.channels_last = channels_last
        self.nhwc = False
        if channels_last is True:
            self.use_channels_last(torch.device("cpu"), "32-true")
        if compile:
            # in place: the state dict keeps its keys, so checkpoints load with or without it
            model.compile(**({"mode": compile} if isinstance(compile, str) else {}))
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
                        # validate_args=False: the label checks read values back from the
                        # device, a host-device sync on every step
                        name: MulticlassAccuracy(num_classes, top_k=k, average="micro",
                                                 validate_args=False)
                        for name, k in topk.items()
                        # not top-5 of the training batches: 0.12 ms of each 20 ms step of the
                        # default run here, for a curve no study reads
                        if stage != "train" or k == 1
                    }
                )
                for stage in STAGES
            }
        )
        # the mean loss of each stage's epoch, accumulated on the device ("disable": the NaN
        # check would read the value back every step)
        self.losses = nn.ModuleDict({f"{s}_loss": MeanMetric(nan_strategy="disable")
                                     for s in STAGES})
        self._resumed_sums: dict | None = None  # from a checkpoint, until the next batch starts
        self._train_epoch_state = "running"  # then "done" (last batch), "logged" (see below)

    def use_channels_last(self, device: torch.device, precision: str) -> bool:
        """Resolve `channels_last` for this device and precision (speed.channels_last_pays) and
        lay the weights out so; whether NHWC is used."""
        self.nhwc = (self.channels_last is True or self.channels_last == "auto"
                     and channels_last_pays(device, precision))
        if self.nhwc:
            self.model.to(memory_format=torch.channels_last)
            if self.ema is not None:
                self.ema.to(memory_format=torch.channels_last)
        return self.nhwc

    def setup(self, stage: str) -> None:
        if self.channels_last == "auto":
            self.use_channels_last(self.trainer.strategy.root_device, str(self.trainer.precision))

    def laid_out(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the weights' memory layout (NHWC when `nhwc`)."""
        return x.contiguous(memory_format=torch.channels_last) if self.nhwc and x.dim() == 4 else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.laid_out(x))

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> dict:
        x, y = batch
        logits = self(x)
        loss = self.criterion(logits, y)  # y: labels, or mixup/CutMix's soft targets (N x C)
        if y.dim() == 2:  # train/acc of a mixed batch: against each image's dominant label
            y = y.argmax(1)
        if self.ema is not None and stage != "train":
            self.ema.evaluate(stage, self.laid_out(x), y, self.criterion)
        # Loss and accuracy accumulate on the device and are logged once per epoch
        # (_log_epoch); the step loss only on the steps Lightning writes to the logger. Logged
        # on every step, with the loss in the progress bar, they cost a host-device sync per
        # step on a GPU and 0.4 ms per step here (the default run went from 0.91 to 0.93 of a
        # bare loop's speed, with train top-5 dropped: scripts/bench.py).
        # one value per image (a view), weighting the batch by its size: MeanMetric's weight
        # argument is ignored with nan_strategy="disable" (torchmetrics 1.9, aggregation.py)
        self.losses[f"{stage}_loss"].update(loss.detach().expand(len(y)))
        for metric in self.metrics[f"{stage}_metrics"].values():
            metric.update(logits.detach(), y)
        if stage == "train" and self._logs_this_step():
            self.log("train/loss_step", loss, on_step=True, on_epoch=False)
        # the logits reach callbacks' on_*_batch_end (perclass.py) without a second forward pass
        return {"loss": loss, "logits": logits.detach()}

    def _logs_this_step(self) -> bool:
        # Lightning writes step metrics when (optimizer steps + 1) % log_every_n_steps == 0
        # (LoggerConnector.should_update_logs), and on every step of a fast_dev_run
        every = self.trainer.log_every_n_steps
        if self.trainer.fast_dev_run:
            return True
        return every > 0 and (self.global_step + 1) % every == 0

    def _log_epoch(self, stage: str) -> None:
        prefix = self.test_prefix if stage == "test" else stage
        # train/loss, val/loss, test/loss: one name per stage (runs before 2026-11 logged the
        # train epoch loss as train/loss_epoch; runs/compare.py reads both)
        self.log(f"{prefix}/loss", self.losses[f"{stage}_loss"], prog_bar=True)
        for name, metric in self.metrics[f"{stage}_metrics"].items():
            self.log(f"{prefix}/{name}", metric, prog_bar=name == "acc")
        if self.ema is not None and stage != "train":
            for name, metric in self.ema.stage_metrics[stage].items():
                self.log(f"{prefix}/{name}_ema", metric)

    # -- the train epoch's numbers, logged before its validation ---------------------------------
    # Lightning validates after the epoch's last batch and calls on_train_epoch_end after that:
    # logged there, the train numbers reach the progress bar one epoch late (beside "Epoch N"
    # it would show epoch N-1's, and never the last epoch's). They are logged as validation
    # starts instead, once the epoch's batches are all done; on_train_epoch_end logs them when
    # no validation ran.

    def on_train_epoch_start(self) -> None:
        self._train_epoch_state = "running"

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.step(self.model, self.global_step)
        if batch_idx + 1 >= self.trainer.num_training_batches:
            self._train_epoch_state = "done"

    def on_validation_epoch_start(self) -> None:
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking \
                and self._train_epoch_state == "done":
            self._log_epoch("train")
            self._train_epoch_state = "logged"

    def on_train_epoch_end(self) -> None:
        if self._train_epoch_state != "logged":
            self._log_epoch("train")

    # -- the epoch in progress, carried by a checkpoint written mid-epoch (on SIGTERM) ----------

    def _train_accumulators(self) -> dict[str, Metric]:
        return {"loss": self.losses["train_loss"], **self.metrics["train_metrics"]}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the partial sums of train/loss and train/acc; torchmetrics keeps them out of
        # state_dict, which also serves evaluation and fine-tuning
        checkpoint["train_epoch_sums"] = {
            name: dict(metric.metric_state) for name, metric in self._train_accumulators().items()
        }
        # the last epoch's train/val numbers: final/* of a run resumed after its last epoch
        checkpoint["epoch_metrics"] = epoch_metrics(self.trainer)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resumed_sums = checkpoint.get("train_epoch_sums")

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        sums, self._resumed_sums = self._resumed_sums, None
        # batch 0: an epoch-end checkpoint, the epoch starts afresh; under DDP the sums are rank
        # 0's alone, and each rank would add them again
        if sums is None or batch_idx == 0 or self.trainer.world_size > 1:
            return
        for name, metric in self._train_accumulators().items():
            for state, value in sums[name].items():
                setattr(metric, state, value.to(self.device))
            metric._update_count = batch_idx  # compute() warns on metrics never updated

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._step(batch, "test")

    def configure_optimizers(self):
        optimizer = self.optimizer(parameter_groups(self.model, self.weight_decay_bn_bias))
        for group in optimizer.param_groups:  # before the scheduler records its initial_lr
            group["lr"] *= group.get("lr_scale", 1.0)
        lr_scheduler = {"interval": "epoch", **(self.scheduler or {})}
        make = lr_scheduler.get("scheduler")
        # A constant rate is a scheduler too: LearningRateMonitor then logs it as "lr" (the
        # name every schedule option sets) rather than "lr-<optimizer class>".
        lr_scheduler["scheduler"] = (make(optimizer) if make is not None else
                                     torch.optim.lr_scheduler.ConstantLR(optimizer, 1.0, 0))
        lr_scheduler.setdefault("name", "lr")
        return {"optimizer": optimizer, "lr_scheduler": lr_scheduler}
