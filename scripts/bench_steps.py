"""Step timing for scripts/bench.py: the bare loop (a) against the framework (b) on one `Case`.

(a) is the model, its optimizer and cross-entropy over the data module's own batches; (b) is a
real `pl.Trainer` built by `resnet_exp.train.assemble`, as a run builds it, training or validating
the case's `Classifier`. Both read the same batches through the same on-device preprocessing.
"""

from __future__ import annotations

import functools
import time
from contextlib import nullcontext
from pathlib import Path
from statistics import median

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from resnet_exp.core.config import compose
from resnet_exp.train import assemble

# What (b) leaves out of a run, after `callbacks=lean` (the callbacks that act once per fit or
# test): validation and checkpoints (a checkpoint needs val/acc, and evaluation is measured on
# its own). Each measurement sets the length.
MEASURED = ["~callbacks.model_checkpoint", "++trainer.max_epochs=-1",
            "++trainer.limit_val_batches=0", "++trainer.num_sanity_val_steps=0",
            "++trainer.enable_checkpointing=false"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def precision_context(precision: str, device: torch.device):
    name = str(precision)
    if name.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if name.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


class StepTimer(pl.Callback):
    """Times `steps` batches after `warmup` ones, from the end of one batch's hooks to the end
    of another's; last in the callback list, so every other hook is inside."""

    def __init__(self, warmup: int, steps: int, stage: str) -> None:
        self.warmup, self.steps, self.stage = warmup, steps, stage
        self.done = 0
        self.images = 0
        self.start = self.seconds = 0.0

    def _batch_end(self, trainer, batch) -> None:
        self.done += 1
        if self.done == self.warmup:
            sync(trainer.strategy.root_device)
            self.start = time.perf_counter()
        elif self.done > self.warmup:
            self.images += len(batch[0])
        if self.done == self.warmup + self.steps:
            sync(trainer.strategy.root_device)
            self.seconds = time.perf_counter() - self.start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.stage == "train":
            self._batch_end(trainer, batch)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        if self.stage == "validation":
            self._batch_end(trainer, batch)

    def rate(self) -> float:
        if not self.seconds:
            raise RuntimeError(f"only {self.done} of {self.warmup + self.steps} batches ran")
        return self.images / self.seconds


class Paired(pl.Callback):
    """See `Case.paired`. Last in the callback list: a framework step is the time from the end
    of the previous bare step to the end of this batch's hooks."""

    def __init__(self, case: Case, warmup: int, steps: int, train: bool) -> None:
        self.bare = case.bare_steps(train)
        self.device, self.warmup, self.steps, self.train = case.device, warmup, steps, train
        self.done = 0
        self.mark = 0.0
        self.pairs: list[tuple[float, float, int, int]] = []  # seconds and images: a, b

    def _batch_end(self, batch) -> None:
        sync(self.device)
        now = time.perf_counter()
        self.done += 1
        if self.done > self.warmup + self.steps:
            return
        images = next(self.bare)
        sync(self.device)
        framework_s, self.mark = now - self.mark, time.perf_counter()
        if self.done > self.warmup:
            self.pairs.append((self.mark - now, framework_s, images, len(batch[0])))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.train:
            self._batch_end(batch)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        if not self.train:
            self._batch_end(batch)

    def rates(self) -> tuple[float, float, int]:
        """Images/s of a and b over the pairs where neither step stalled (took over 4x its
        median: another process had the cores, 1-2 s at a time on a busy 2-core machine), and
        how many pairs were left out. Periodic costs of either side stay in."""
        if len(self.pairs) < self.steps:
            raise RuntimeError(f"only {self.done} of {self.warmup + self.steps} batches ran")
        limits = [4 * median([pair[i] for pair in self.pairs]) for i in (0, 1)]
        kept = [p for p in self.pairs if p[0] <= limits[0] and p[1] <= limits[1]]
        bare = sum(p[2] for p in kept) / sum(p[0] for p in kept)
        framework = sum(p[3] for p in kept) / sum(p[1] for p in kept)
        return bare, framework, len(self.pairs) - len(kept)


class Case:
    """One model on one data module, as the framework and as a bare loop, from one config.

    `datamodule`: one already set up to share (decoding CIFAR-10 costs seconds), else the
    config's own. The module and the data module last for the case's measurements, so a
    compiled network compiles once; each measurement gets a fresh trainer from `assemble`."""

    def __init__(self, label: str, overrides: list[str], out: Path, datamodule=None) -> None:
        self.label = label
        self.out = out
        self.overrides = ["callbacks=lean", *overrides, *MEASURED]
        cfg = compose(self.overrides, out)
        parts = assemble(cfg, testing=False)
        self.datamodule = datamodule or parts.datamodule
        self.datamodule.setup("fit")
        self.module = parts.module
        self.device = parts.trainer.strategy.root_device
        self.precision = str(parts.trainer.precision)
        # "auto" resolved as the run's setup hook resolves it
        self.channels_last = parts.module.layout.lay_out(self.device, self.precision, parts.model)
        # The bare loop's model from a second assemble call rather than hydra's instantiate or
        # a deepcopy: the same initial weights (assemble seeds first) and the same speed options
        # applied as a run applies them (the Classifier sets channels_last and compiles the
        # network in place; a deepcopy of a compiled network comes out uncompiled).
        # Its optimizer is the config's, from that module's optimizer factory.
        bare = assemble(cfg, testing=False)
        bare.module.layout.lay_out(self.device, self.precision, bare.model)
        self.bare_model = bare.model.to(self.device)
        self.bare_optimizer = bare.module.optimizer(self.bare_model.parameters())
        self.batch_size = self.datamodule.batch_size

    # -- (b): the framework ---------------------------------------------------------------------

    def _trainer(self, callback: pl.Callback, **settings) -> pl.Trainer:
        """The trainer of one measurement, with `callback` last; `settings` set its length.
        The other parts assemble builds with it are left unused (see the class docstring)."""
        cfg = compose(self.overrides + [f"++trainer.{k}={v}" for k, v in settings.items()],
                      self.out)
        return assemble(cfg, extra_callbacks=(callback,), testing=False).trainer

    def framework(self, warmup: int, steps: int) -> float:
        timer = StepTimer(warmup, steps, "train")
        self._trainer(timer, max_steps=warmup + steps).fit(self.module, datamodule=self.datamodule)
        return timer.rate()

    def framework_eval(self, warmup: int, steps: int) -> float:
        timer = StepTimer(warmup, steps, "validation")
        trainer = self._trainer(timer, limit_val_batches=warmup + steps)
        trainer.validate(self.module, datamodule=self.datamodule, verbose=False)
        return timer.rate()

    # -- (a): the bare loop ---------------------------------------------------------------------

    def _batches(self, loader, train: bool):
        while True:  # epochs, as many as the measurement needs
            for x, y in loader:
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
                x, y = self.datamodule.prepare_batch(x, y, train=train)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                yield x, y

    def bare_steps(self, train: bool):
        """The bare loop, one step per `next()`, which returns the batch's image count."""
        model, optimizer = self.bare_model, self.bare_optimizer
        model.train(train)
        loader = self.datamodule.train_dataloader() if train else self.datamodule.val_dataloader()
        correct = 0
        for x, y in self._batches(loader, train):
            if train:
                with precision_context(self.precision, self.device):
                    loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            else:
                with torch.inference_mode(), precision_context(self.precision, self.device):
                    correct = correct + (model(x).argmax(1) == y).sum()  # stays on the device
            yield len(y)

    def bare(self, warmup: int, steps: int, train: bool = True) -> float:
        bare = self.bare_steps(train)
        for _ in range(warmup):
            next(bare)
        sync(self.device)
        start = time.perf_counter()
        images = sum(next(bare) for _ in range(steps))
        sync(self.device)
        return images / (time.perf_counter() - start)

    def bare_eval(self, warmup: int, steps: int) -> float:
        return self.bare(warmup, steps, train=False)

    # -- (a) and (b) step by step ---------------------------------------------------------------

    def paired(self, warmup: int, steps: int, train: bool = True) -> tuple[float, float, int]:
        """Images/s of the bare loop and of the framework, measured in turns: after each of the
        framework's batches, one bare step on the next batch of its own loader. On a CPU that
        other jobs share, both then see the same moments of the machine. Also returns how many
        pairs were left out as stalls."""
        pair = Paired(self, warmup, steps, train)
        if train:
            trainer = self._trainer(pair, max_steps=warmup + steps)
            trainer.fit(self.module, datamodule=self.datamodule)
        else:
            trainer = self._trainer(pair, limit_val_batches=warmup + steps)
            trainer.validate(self.module, datamodule=self.datamodule, verbose=False)
        return pair.rates()


def calibrate(run, batch_size: int, seconds: float) -> tuple[int, int]:
    """Warm-up and measured steps (8 to 2,000) so that one measurement takes about `seconds`,
    from the rate `run` measures over a few steps after warm-up ones. At least 3 warm-up steps:
    the first steps of a fit are slower (allocations, the first batches' one-off costs)."""
    steps = int(min(2000, max(8, seconds * run(2, 5) / batch_size)))
    return max(3, steps // 10), steps


def rounds(runs: dict, rounds_n: int, warmup: int, steps: int, log) -> dict[str, list[float]]:
    """Every run once per round, in an order that rotates, so drifting load hits all alike."""
    rates = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds_n):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            rates[name].append(runs[name](warmup, steps))
        log(f"    round {r + 1}: " + "  ".join(f"{n} {rates[n][-1]:,.0f}" for n in names))
    return rates


def ratios(a: list[float], b: list[float]) -> dict:
    """b against a: the median of the rounds' ratios (each round's a and b ran moments apart)
    and their range, how far the noise moved them."""
    each = [y / x for x, y in zip(a, b, strict=True)]
    return {"ratio": median(each), "spread": f"{min(each):.2f}-{max(each):.2f}"}


def compare(case: Case, rounds_n: int, warmup: int, steps: int, log, train: bool = True) -> dict:
    """(a) against (b): in turns step by step on a CPU (Case.paired); on a GPU in rotating
    whole runs, because a sync after every step would expose the host's work, which
    asynchronous execution hides behind the GPU's."""
    if case.device.type == "cpu":
        bare, framework = [], []
        for r in range(rounds_n):
            a, b, stalled = case.paired(warmup, steps, train)
            bare.append(a)
            framework.append(b)
            log(f"    round {r + 1}: bare {a:,.0f}  framework {b:,.0f}  b/a {b / a:.3f}"
                f"  ({stalled} of {steps} pairs stalled)")
    else:
        runs = {"bare": functools.partial(case.bare, train=train),
                "framework": case.framework if train else case.framework_eval}
        rates = rounds(runs, rounds_n, warmup, steps, log)
        bare, framework = rates["bare"], rates["framework"]
    return dict(bare=median(bare), framework=median(framework), **ratios(bare, framework))


def data_rate(datamodule, device: torch.device, batches: int, warmup: int = 3) -> float:
    """Images/s of the training batches alone: loading, transfer and on-device augmentation."""
    loader = datamodule.train_dataloader()
    images, start = 0, 0.0
    for i, (x, y) in enumerate(loader, start=1):
        x, _ = datamodule.prepare_batch(x.to(device, non_blocking=True),
                                        y.to(device, non_blocking=True), train=True)
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        elif i > warmup:
            images += len(x)
        if i == warmup + batches:
            break
    sync(device)
    return images / (time.perf_counter() - start)
