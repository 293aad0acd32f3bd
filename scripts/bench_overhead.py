"""What the framework adds to a training step, piece by piece (docs/speed.md#per-step).

    OMP_NUM_THREADS=1 python scripts/bench_overhead.py              # ~5 min on 2 busy cores
    OMP_NUM_THREADS=1 python scripts/bench_overhead.py --floor-rounds 0

- per call, the fastest of 9 repeats: one training step's loss and accuracy sums against
  torchmetrics' MeanMetric and MulticlassAccuracy; the context Lightning's default profiler builds
  around a hook against `profiling.NoProfiler`'s; the `_current_fx_name` Lightning sets around a
  hook, on a plain LightningModule and on the Classifier;
- Python function calls per training step, counted by cProfile over steps 20-220 of
  scripts/bench.py's default-run case (a count, the same on a busy machine as on a quiet one):
  as the bench runs it, without its logger and callbacks, and Lightning alone (no logger, no
  callbacks but the silent progress bar, a training step that is a forward and a loss); and per
  end of an epoch;
- b/a of Lightning alone, the bench's paired measurement (scripts/bench_steps.py): the floor
  under the default run's b/a.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import pstats
import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import quiet  # noqa: E402

WITHOUT_FEATURES = ["~logger", *(f"~callbacks.{name}" for name in (
    "learning_rate_monitor", "throughput", "step_log_interval", "stop_on_nan", "epoch_seed",
    "early_stopping"))]


def per_call() -> dict[str, float]:
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.profilers import PassThroughProfiler
    from torch import nn
    from torchmetrics import MeanMetric
    from torchmetrics.classification import MulticlassAccuracy

    from resnet_exp.training.metrics import StageMetrics
    from resnet_exp.training.module import Classifier
    from resnet_exp.training.profiling import NoProfiler

    def us(f, number: int = 20000) -> float:
        return min(timeit.repeat(f, number=number, repeat=9)) / number * 1e6

    logits, y = torch.randn(64, 10), torch.randint(0, 10, (64,))  # the default run's batch
    loss = nn.functional.cross_entropy(logits, y)
    mean, accuracy = MeanMetric(nan_strategy="disable"), MulticlassAccuracy(
        10, average="micro", validate_args=False)

    def torchmetrics_step():
        mean.update(loss.detach().expand(len(y)))
        accuracy.update(logits.detach(), y)

    sums = StageMetrics()
    lightning, nothing = PassThroughProfiler(), NoProfiler()

    def in_profiler(profiler):
        with profiler.profile("[Callback]EpochThroughput.on_train_batch_end"):
            pass

    def set_fx(module):
        module._current_fx_name = "on_train_batch_end"

    plain = type("Plain", (pl.LightningModule,), {})()
    classifier = Classifier(nn.Linear(2, 2), 2, optimizer=functools.partial(torch.optim.SGD,
                                                                            lr=0.1))
    return {"step sums, torchmetrics": us(torchmetrics_step, 5000),
            "step sums, StageMetrics": us(lambda: sums.add(loss, logits, y), 5000),
            "hook context, PassThroughProfiler": us(lambda: in_profiler(lightning)),
            "hook context, NoProfiler": us(lambda: in_profiler(nothing)),
            "_current_fx_name, LightningModule": us(lambda: set_fx(plain)),
            "_current_fx_name, Classifier": us(lambda: set_fx(classifier))}


def lightning_alone(case) -> None:
    """The case's module trains as a forward and a loss, and logs nothing."""
    import torch.nn.functional as F

    module = case.module

    def training_step(batch, batch_idx):
        x, y = batch
        return F.cross_entropy(module(x), y)

    module.training_step = training_step
    module.on_train_epoch_end = lambda: None


def counted_calls(case, epoch_ends: bool, steps: int = 200, start: int = 20) -> float:
    """Python calls per training step over `steps` steps after `start`, or (`epoch_ends`) per
    end of an epoch in that span, from its last batch's end to the next epoch's first batch
    (its reseeding included). One fit each: cProfile counts one profile at a time."""
    import pytorch_lightning as pl

    class Count(pl.Callback):  # last among the callbacks: the others' hooks are inside
        def __init__(self):
            self.profile, self.done, self.counted, self.on = cProfile.Profile(), 0, 0, False

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if epoch_ends and self.on and batch_idx == 0:
                self.profile.disable()
                self.on, self.counted = False, self.counted + 1

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.done += 1
            if not epoch_ends and self.done in (start, start + steps):
                (self.profile.enable if self.done == start else self.profile.disable)()
                self.counted = steps
            last = batch_idx + 1 == trainer.num_training_batches
            if epoch_ends and start <= self.done < start + steps and last:
                self.profile.enable()
                self.on = True

    count = Count()
    case._trainer(count, max_steps=start + steps + 1).fit(case.module, datamodule=case.datamodule)
    return sum(s[1] for s in pstats.Stats(count.profile).stats.values()) / max(count.counted, 1)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--floor-rounds", type=int, default=5,
                   help="rounds of Lightning alone's paired b/a (0: none)")
    p.add_argument("--seconds", type=float, default=2.5, help="about how long one round runs")
    args = p.parse_args(argv)
    quiet()
    from bench_steps import Case, calibrate, compare

    for name, value in per_call().items():
        print(f"{name:36s} {value:7.2f} us")
    out = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    cases = {"as the bench runs it": [], "without logger and callbacks": WITHOUT_FEATURES,
             "Lightning alone": WITHOUT_FEATURES}
    for label, overrides in cases.items():
        case = Case(label, ["model=resnet20", *overrides], out)
        if label == "Lightning alone":
            lightning_alone(case)
        step, epoch_end = counted_calls(case, False), counted_calls(case, True)
        print(f"Python calls, {label:28s} {step:7.0f} a step, {epoch_end:7.0f} an epoch's end")
    if args.floor_rounds:  # `case` is Lightning alone's
        warmup, steps = calibrate(case.bare, case.batch_size, args.seconds)
        row = compare(case, args.floor_rounds, warmup, steps, print)
        print(f"Lightning alone: b/a {row['ratio']:.3f} (rounds {row['spread']})")


if __name__ == "__main__":
    main()
