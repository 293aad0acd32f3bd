"""The LightningModule every study trains: its training, validation and test steps, and what they
log. What it uses has a home of its own: the loss and accuracy sums (metrics.py), the weights'
moving average (ema.py), the optimizer's parameter groups (param_groups.py), the memory layout
(speed.ChannelsLast); augmentation and batch mixing happen in the data module."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import pytorch_lightning as pl
import torch
from torch import nn

from resnet_exp.training.ema import EMA
from resnet_exp.training.metrics import StageMetrics, epoch_metrics
from resnet_exp.training.param_groups import ParamGroups
from resnet_exp.training.speed import ChannelsLast

STAGES = ("train", "val", "test")


class Classifier(pl.LightningModule):
    """Image classification with top-1 (and top-5 from 10 classes up) accuracy per stage.

    With batch mixing (augmentation.mixup_alpha/cutmix_alpha) the training targets are soft;
    the loss takes them as they are and train/acc counts a prediction of the label with the
    larger share as right (validation and test are never mixed).

    `optimizer` is a partial taking the parameter groups, which `param_groups` makes (default:
    one group); `scheduler` is Lightning's scheduler dict (`interval`, `frequency`, `monitor`)
    whose `scheduler` entry is a partial taking the optimizer, or None.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: Callable[[Iterable], torch.optim.Optimizer],
        scheduler: dict | None = None,
        label_smoothing: float = 0.0,
        param_groups: ParamGroups | None = None,
        channels_last: bool | str = "auto",
        compile: bool | str = False,
        ema_decay: float | None = None,
        ema_every_n_steps: int = 1,
        ema_warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        self.model = model
        # the weights' moving average, evaluated beside them; copied before the network is
        # compiled or laid out
        self.ema = (EMA(model, ema_decay, ema_every_n_steps, ema_warmup_steps)
                    if ema_decay is not None else None)
        # channels_last and compile: speed options, measured in docs/speed.md; "auto" is
        # decided in setup, once the device and precision are known
        self.layout = ChannelsLast(channels_last)
        if channels_last is True:
            self.layout.lay_out(torch.device("cpu"), "32-true", *self._weights())
        if compile:
            # in place: the state dict keeps its keys, so checkpoints load with or without it
            model.compile(**({"mode": compile} if isinstance(compile, str) else {}))
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.param_groups = param_groups or ParamGroups()
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        # not top-5 of the training batches: a curve no study reads, for a top-k per step
        top5 = (1, 5) if num_classes >= 10 else (1,)
        # Keyed "<stage>_metrics": nn.Module already has an attribute named `train`.
        self.metrics = nn.ModuleDict({f"{stage}_metrics": StageMetrics((1,) if stage == "train"
                                                                        else top5)
                                      for stage in STAGES})
        self._test_prefix = "test"
        self._resumed_sums: dict | None = None  # from a checkpoint, until the next batch starts
        self._train_epoch_state = "running"  # then "done" (last batch), "logged" (see below)

    def __setattr__(self, name: str, value) -> None:
        # Lightning (2.6, trainer/call.py) sets this string before and after every hook it calls,
        # dozens of times a training step, and nn.Module's __setattr__ first looks each name up
        # among parameters, buffers and submodules: measured in docs/speed.md#per-step.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _weights(self) -> list[nn.Module]:
        return [self.model, *([self.ema] if self.ema is not None else [])]

    def setup(self, stage: str) -> None:
        if self.layout.setting == "auto":
            self.layout.lay_out(self.trainer.strategy.root_device, str(self.trainer.precision),
                                *self._weights())

    @property
    def test_prefix(self) -> str:
        """What the test's results are logged as: "test", or as `tested_as` says."""
        return self._test_prefix

    @contextmanager
    def tested_as(self, prefix: str) -> Iterator[None]:
        """Log the tests run inside the block as `<prefix>/acc`, ... (train.fit_and_test tests
        the best checkpoint as "test", the last one as "test_last")."""
        before, self._test_prefix = self._test_prefix, prefix
        try:
            yield
        finally:
            self._test_prefix = before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.layout(x))

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor],
              stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self(x)
        loss = self.criterion(logits, y)  # y: labels, or mixup/CutMix's soft targets (N x C)
        labels = y.argmax(1) if y.dim() == 2 else y  # a mixed image counts as its dominant label
        if self.ema is not None and stage != "train":
            self.ema.evaluate(stage, self.layout(x), labels, self.criterion)
        # Loss and accuracy accumulate on the device and are logged once per epoch
        # (_log_epoch); the step loss only on the steps Lightning writes to the logger. Logged
        # on every step, with the loss in the progress bar, they would cost a host-device sync
        # per step on a GPU (docs/speed.md).
        self.metrics[f"{stage}_metrics"].add(loss, logits, labels)
        if stage == "train" and self._logs_this_step():
            self.log("train/loss_step", loss, on_step=True, on_epoch=False)
        return loss, logits

    def _logs_this_step(self) -> bool:
        # Lightning writes step metrics when (optimizer steps + 1) % log_every_n_steps == 0
        # (LoggerConnector.should_update_logs), and on every step of a fast_dev_run
        every = self.trainer.log_every_n_steps
        if self.trainer.fast_dev_run:
            return True
        return every > 0 and (self.global_step + 1) % every == 0

    def _log_epoch(self, stage: str) -> None:
        prefix = self.test_prefix if stage == "test" else stage
        # train/loss, val/loss, test/loss: one name per stage (runs/migrate.py and
        # runs/compare.py also read the train/loss_epoch of older run folders)
        for name, metric in self.metrics[f"{stage}_metrics"].items():
            self.log(f"{prefix}/{name}", metric, prog_bar=name in ("loss", "acc"))
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

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the partial sums of train/loss and train/acc; torchmetrics keeps them out of
        # state_dict, which also serves evaluation and fine-tuning
        checkpoint["train_epoch_sums"] = self.metrics["train_metrics"].partial_sums()
        # the last epoch's train/val numbers: final/* of a run resumed after its last epoch
        checkpoint["epoch_metrics"] = epoch_metrics(self.trainer)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resumed_sums = checkpoint.get("train_epoch_sums")

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self._resumed_sums is None:  # every step but a resumed epoch's first
            return
        sums, self._resumed_sums = self._resumed_sums, None
        # batch 0: an epoch-end checkpoint, the epoch starts afresh; under DDP the sums are rank
        # 0's alone, and each rank would add them again
        if batch_idx > 0 and self.trainer.world_size == 1:
            self.metrics["train_metrics"].resume(sums)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")[0]

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        loss, logits = self._step(batch, "test")
        # the logits reach callbacks' on_test_batch_end (perclass.py) without a second forward
        return {"loss": loss, "logits": logits.detach()}

    def configure_optimizers(self):
        optimizer = self.param_groups.optimizer(self.optimizer, self.model)
        lr_scheduler = {"interval": "epoch", **(self.scheduler or {})}
        make = lr_scheduler.get("scheduler")
        # A constant rate is a scheduler too: LearningRateMonitor then logs it as "lr" (the
        # name every schedule option sets) rather than "lr-<optimizer class>".
        lr_scheduler["scheduler"] = (make(optimizer) if make is not None else
                                     torch.optim.lr_scheduler.ConstantLR(optimizer, 1.0, 0))
        lr_scheduler.setdefault("name", "lr")
        return {"optimizer": optimizer, "lr_scheduler": lr_scheduler}
