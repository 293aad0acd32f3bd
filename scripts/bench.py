"""What the framework costs over a bare PyTorch loop, and how fast its data path is (issue 7).

    python scripts/bench.py                  # everything, a few minutes on 2 CPU cores
    python scripts/bench.py --parts train    # train, options, compile, eval, data, memory, startup
    make bench ARGS="--parts data,startup --rounds 5"

In one process, side by side on the same model, data and precision:
  (a) a bare loop: the model, SGD, cross-entropy, over the data module's own batches;
  (b) the framework: a real `pl.Trainer` with the config's callbacks and logger, training
      `resnet_exp.module.Classifier` on the same data module.
Both read the same batches through the same on-device preprocessing (uint8 -> float, augment), so
the ratio b/a is what Lightning and the module add per step; the data path is measured alone.
Warm-up steps come first (compilation, allocations, first-batch costs); a measurement spans
whole epochs where an epoch is shorter than it, so per-epoch costs count too. On a CPU, (a) and
(b) take turns step by step (Case.paired), so that other processes on a shared machine slow both
alike, and pairs in which a step stalled are left out; on a GPU whole measurements alternate.
Each figure is the median of --rounds rounds, with their range. Peak memory is taken in two
fresh processes (a peak cannot be reset within one).

Validation and checkpointing are off in (b): the comparison is of training steps; evaluation is
measured on its own ("eval"). The GPU is used when there is one.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CIFAR_TAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
PARTS = ("train", "options", "compile", "eval", "data", "memory", "startup")
# Callbacks that act once per fit or per validation, not per step: left out of (b), which does
# not validate (a checkpoint needs val/acc) and would print a model summary every round.
NOT_PER_STEP = ("model_checkpoint", "model_summary")


# -- setting up ---------------------------------------------------------------------------------


def cifar_root(cache: Path) -> Path | None:
    """The real CIFAR-10 JPEG copy, extracted once under `cache`; None where there is none."""
    env = os.environ.get("RESNET_EXP_DATA")
    for candidate in ([Path(env) / "cifar10-jpeg"] if env else []) + [cache / "cifar10-jpeg"]:
        if (candidate / "train").is_dir():
            return candidate
    if not CIFAR_TAR.is_file():
        return None
    target = cache / "cifar10-jpeg"
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(CIFAR_TAR) as tar:
        tar.extractall(target, filter="data")
    return target


def cifar_overrides(root: Path | None, in_memory: bool = True) -> list[str]:
    """CIFAR-10 from the JPEG copy (decoded into memory, or read from the files by DataLoader
    workers), or 32x32 synthetic images where there is no copy."""
    if root is not None:
        return ["data=imagefolder", f"data.root={root}", f"data.in_memory={str(in_memory).lower()}"]
    return ["data=synthetic", "data.num_train=45000", "data.num_val=5000", "data.num_test=10000"]


def compose(overrides: list[str], out: Path):
    """The config `python -m resnet_exp <overrides>` would run, with Hydra's node set for `out`."""
    from resnet_exp.resume import compose as compose_run

    return compose_run(overrides, out)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def precision_context(precision: str, device):
    import torch

    name = str(precision)
    if name.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if name.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


class Case:
    """One model on one data module, as the framework and as a bare loop, from one config."""

    def __init__(self, label: str, overrides: list[str], out: Path, datamodule=None) -> None:
        import torch
        from hydra.utils import instantiate

        self.label = label
        self.out = out
        self.cfg = cfg = compose(overrides, out)
        torch.manual_seed(0)
        self.datamodule = datamodule or instantiate(cfg.data)
        self.datamodule.setup("fit")
        model = instantiate(cfg.model)
        self.bare_model = copy.deepcopy(model)
        self.module = instantiate(cfg.module, model=model, optimizer=instantiate(cfg.optimizer),
                                  scheduler=instantiate(cfg.scheduler, _convert_="all"))
        # the bare loop gets the same speed options, applied the plain way
        self.channels_last = bool(cfg.module.get("channels_last"))
        if self.channels_last:
            self.bare_model.to(memory_format=torch.channels_last)
        if cfg.module.get("compile"):
            self.bare_model.compile()
        self.precision = str(cfg.trainer.precision)
        self.device = self._trainer(max_steps=1).strategy.root_device
        self.bare_model.to(self.device)
        self.bare_optimizer = instantiate(cfg.optimizer)(self.bare_model.parameters())
        self.batch_size = self.datamodule.batch_size

    # -- (b): the framework ---------------------------------------------------------------------

    def _trainer(self, timer=None, **kwargs):
        from hydra.utils import instantiate

        cfg = self.cfg
        callbacks = [instantiate(c) for key, c in (cfg.get("callbacks") or {}).items()
                     if c and key not in NOT_PER_STEP]
        loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values() if lg]
        settings = dict(max_epochs=-1, limit_val_batches=0, num_sanity_val_steps=0,
                        enable_checkpointing=False)
        settings.update(kwargs)
        return instantiate(cfg.trainer, callbacks=callbacks + ([timer] if timer else []),
                           logger=loggers or False, **settings)

    def framework(self, warmup: int, steps: int) -> float:
        timer = step_timer()(warmup, steps, "train")
        trainer = self._trainer(timer, max_steps=warmup + steps)
        trainer.fit(self.module, datamodule=self.datamodule)
        return timer.rate()

    def framework_eval(self, warmup: int, steps: int) -> float:
        timer = step_timer()(warmup, steps, "validation")
        trainer = self._trainer(timer, limit_val_batches=warmup + steps)
        trainer.validate(self.module, datamodule=self.datamodule, verbose=False)
        return timer.rate()

    # -- (a): the bare loop ---------------------------------------------------------------------

    def _batches(self, loader, train: bool):
        import torch

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
        import torch
        import torch.nn.functional as F

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
        pair = paired_callback()(self, warmup, steps, train)
        if train:
            self._trainer(pair, max_steps=warmup + steps).fit(self.module,
                                                              datamodule=self.datamodule)
        else:
            trainer = self._trainer(pair, limit_val_batches=warmup + steps)
            trainer.validate(self.module, datamodule=self.datamodule, verbose=False)
        return pair.rates()


@functools.cache
def paired_callback():
    import pytorch_lightning as pl

    class Paired(pl.Callback):
        """See Case.paired. Last in the callback list: a framework step is the time from the
        end of the previous bare step to the end of this batch's hooks."""

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
            median: another process had the cores, 1-2 s at a time on a busy 2-core machine),
            and how many pairs were left out. Periodic costs of either side stay in."""
            if len(self.pairs) < self.steps:
                raise RuntimeError(f"only {self.done} of {self.warmup + self.steps} batches ran")
            limits = [4 * median([pair[i] for pair in self.pairs]) for i in (0, 1)]
            kept = [p for p in self.pairs if p[0] <= limits[0] and p[1] <= limits[1]]
            bare = sum(p[2] for p in kept) / sum(p[0] for p in kept)
            framework = sum(p[3] for p in kept) / sum(p[1] for p in kept)
            return bare, framework, len(self.pairs) - len(kept)

    return Paired


@functools.cache
def step_timer():
    """The timing callback's class; Lightning is imported only when it is needed (the bare
    memory probe must not pay for it)."""
    import pytorch_lightning as pl

    class StepTimer(pl.Callback):
        """Times `steps` batches after `warmup` ones, from the end of one batch's hooks to the
        end of another's; last in the callback list, so every other hook is inside."""

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

    return StepTimer


# -- measuring ----------------------------------------------------------------------------------


def calibrate(run, batch_size: int, seconds: float) -> tuple[int, int]:
    """Warm-up and measured steps (8 to 2,000) so that one measurement takes about `seconds`,
    from the rate `run` measures over a few steps after warm-up ones. At least 3 warm-up steps:
    the first steps of a fit are slower (allocations, the progress bar's thread starting)."""
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


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratios(a: list[float], b: list[float]) -> dict:
    """b against a: the median of the rounds' ratios (each round's a and b ran moments apart)
    and their range, how far the noise moved them."""
    each = [y / x for x, y in zip(a, b, strict=True)]
    return {"ratio": median(each), "spread": f"{min(each):.2f}-{max(each):.2f}"}


def compare(case: Case, args, warmup: int, steps: int, log, train: bool = True) -> dict:
    """(a) against (b): in turns step by step on a CPU (Case.paired); on a GPU in rotating
    whole runs, because a sync after every step would expose the host's work, which
    asynchronous execution hides behind the GPU's."""
    if case.device.type == "cpu":
        bare, framework = [], []
        for r in range(args.rounds):
            a, b, stalled = case.paired(warmup, steps, train)
            bare.append(a)
            framework.append(b)
            log(f"    round {r + 1}: bare {a:,.0f}  framework {b:,.0f}  b/a {b / a:.3f}"
                f"  ({stalled} of {steps} pairs stalled)")
    else:
        runs = {"bare": functools.partial(case.bare, train=train),
                "framework": case.framework if train else case.framework_eval}
        rates = rounds(runs, args.rounds, warmup, steps, log)
        bare, framework = rates["bare"], rates["framework"]
    return dict(bare=median(bare), framework=median(framework), **ratios(bare, framework))


# -- parts --------------------------------------------------------------------------------------


def part_train(args, ctx, log) -> list[dict]:
    """Bare loop vs framework, per model; the small model is the default run's."""
    rows = []
    cases = [("ResNet-20, digits 8x8, batch 64 (default run)", ["model=resnet20"], None, 0.9)]
    # one CIFAR-10 data module for every case: decoding it costs seconds
    for depth in args.depths:
        cases.append((f"ResNet-{depth}, CIFAR-10, batch 128",
                      [f"model=resnet{depth}", "augmentation=standard", *ctx["cifar"]],
                      "cifar_dm", 0.97))
    for label, overrides, shared, target in cases:
        log(f"  {label}")
        case = Case(label, overrides + ctx["extra"], ctx["out"], ctx.get(shared))
        if shared:
            ctx[shared] = case.datamodule
        warmup, steps = calibrate(case.bare, case.batch_size, args.seconds)
        row = compare(case, args, warmup, steps, log)
        rows.append(dict(case=label, steps=f"{warmup}+{steps} x {args.rounds}", **row,
                         **goal(row["ratio"], target)))
        if "ResNet-20, CIFAR" in label:
            ctx["resnet20_train"] = row["framework"]
    return rows


def part_options(args, ctx, log) -> list[dict]:
    """Each speed option's effect on the framework's ResNet-20 training, against fp32 NCHW."""
    from resnet_exp import speed

    base = ["model=resnet20", "augmentation=standard", *ctx["cifar"], *ctx["extra"]]
    variants = {"fp32": [], "channels_last": ["module.channels_last=true"],
                "bf16-mixed": ["trainer.precision=bf16-mixed"],
                "channels_last + bf16": ["module.channels_last=true",
                                         "trainer.precision=bf16-mixed"]}
    cases = {}
    for name, extra in variants.items():
        cases[name] = Case(name, base + extra, ctx["out"], ctx.get("cifar_dm"))
        ctx["cifar_dm"] = cases[name].datamodule
    device = cases["fp32"].device
    native = speed.is_native(__import__("torch").bfloat16, device.type)
    log(f"  bf16 native on this {device.type}: {native}")
    warmup, steps = calibrate(cases["fp32"].framework, cases["fp32"].batch_size, args.seconds)
    if not native:  # emulated bf16 is ~15x slower: a few steps say so
        steps = max(2, steps // 8)
    rates = rounds({n: c.framework for n, c in cases.items()}, args.rounds, warmup, steps, log)
    return [dict(option=n, rate=median(r), **ratios(rates["fp32"], r)) for n, r in rates.items()]


def part_compile(args, ctx, log) -> list[dict]:
    """`module.compile=true` against the uncompiled framework, training and eval, per model."""
    from resnet_exp import speed

    rows = []
    for depth in args.compile_depths:
        base = [f"model=resnet{depth}", "augmentation=standard", *ctx["cifar"], *ctx["extra"]]
        plain = Case("plain", base, ctx["out"], ctx.get("cifar_dm"))
        ctx["cifar_dm"] = plain.datamodule
        compiled = Case("compiled", base + ["module.compile=true"], ctx["out"], plain.datamodule)
        log(f"  ResNet-{depth}: compiling (training graph, then the evaluation graphs)")
        val_batches = len(plain.datamodule.val_dataloader())
        before = speed.compile_seconds()
        started = time.perf_counter()
        compiled.framework(1, 1)
        # a whole validation pass: its short last batch compiles a graph of its own
        compiled.framework_eval(1, val_batches - 1)
        compile_s, first_s = speed.compile_seconds() - before, time.perf_counter() - started
        warmup, steps = calibrate(plain.framework, plain.batch_size, args.seconds)
        train = rounds({"plain": plain.framework, "compiled": compiled.framework}, args.rounds,
                       warmup, steps, log)
        warmup_e, steps_e = calibrate(plain.framework_eval, plain.datamodule.eval_batch_size,
                                      args.seconds)
        steps_e = min(steps_e, val_batches - warmup_e)
        evals = rounds({"plain": plain.framework_eval, "compiled": compiled.framework_eval},
                       args.rounds, warmup_e, steps_e, log)
        # the network alone (the bare loop's inference_mode pass): what compiling can give the
        # framework's evaluation at most
        compiled.bare_eval(1, val_batches - 1)  # compiles the bare copy's graphs
        alone = rounds({"plain": plain.bare_eval, "compiled": compiled.bare_eval}, args.rounds,
                       warmup_e, steps_e, log)
        for stage, rates, target in (("train", train, 1.2), ("eval", evals, 1.8),
                                     ("eval, network alone", alone, None)):
            row = ratios(rates["plain"], rates["compiled"])
            rows.append(dict(case=f"ResNet-{depth} {stage}", plain=median(rates["plain"]),
                             compiled=median(rates["compiled"]), compile_s=compile_s,
                             first_s=first_s, **row,
                             **(goal(row["ratio"], target) if target else {})))
    return rows


def part_eval(args, ctx, log) -> list[dict]:
    """Evaluation: bare `inference_mode` loop vs `trainer.validate`, at the eval batch size."""
    rows = []
    for depth in args.eval_depths:
        overrides = [f"model=resnet{depth}", *ctx["cifar"], *ctx["extra"]]
        case = Case(f"ResNet-{depth}", overrides, ctx["out"], ctx.get("cifar_dm"))
        ctx["cifar_dm"] = case.datamodule
        log(f"  ResNet-{depth}, batch {case.datamodule.eval_batch_size}")
        warmup, steps = calibrate(case.bare_eval, case.datamodule.eval_batch_size, args.seconds)
        steps = min(steps, len(case.datamodule.val_dataloader()) - warmup)
        row = compare(case, args, warmup, steps, log, train=False)
        rows.append(dict(case=f"ResNet-{depth}, batch {case.datamodule.eval_batch_size}", **row))
    return rows


def data_rate(datamodule, device, batches: int, warmup: int = 3) -> float:
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


def part_data(args, ctx, log) -> list[dict]:
    """The training data path alone: the in-memory set (one uint8 tensor, batched augmentation
    on the device) and the folder path (files decoded per image in DataLoader workers)."""
    import torch
    from hydra.utils import instantiate

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    root = ctx["cifar_root"]
    paths = {"in-memory (one uint8 tensor)": cifar_overrides(root, in_memory=True)}
    if root is not None:
        paths["folder (JPEG files, DataLoader workers)"] = cifar_overrides(root, in_memory=False)
    for label, data in paths.items():
        cfg = compose(["augmentation=standard", *data, *ctx["extra"]], ctx["out"])
        datamodule = instantiate(cfg.data)
        started = time.perf_counter()
        datamodule.setup("fit")
        setup_s = time.perf_counter() - started
        batches = 300 if "in-memory" in label else 60
        rates = []
        for r in range(args.rounds):
            rates.append(data_rate(datamodule, device, batches))
            log(f"  {label}: round {r + 1}: {rates[-1]:,.0f} img/s")
        workers = datamodule.train_dataloader().num_workers
        train = ctx.get("resnet20_train")  # from the train part, when it ran
        vs_train = median(rates) / train if train else None
        rows.append(dict(path=label, rate=median(rates), setup_s=setup_s, workers=workers,
                         vs_train=vs_train, **(goal(vs_train, 50.0) if "memory" in label
                                               else {})))
    return rows


def peak_memory(kind: str, steps: int, overrides: list[str]) -> dict:
    """Run `steps` training steps of ResNet-56 on CIFAR-10 in a fresh process; its peak RSS."""
    command = [sys.executable, __file__, "--memory-probe", kind, "--probe-steps", str(steps),
               "--probe-overrides", json.dumps(overrides)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe {kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def part_memory(args, ctx, log) -> list[dict]:
    overrides = ["model=resnet56", "augmentation=standard", *ctx["cifar"], *ctx["extra"]]
    results = {}
    for kind in ("bare", "framework"):
        log(f"  {kind}: ResNet-56, CIFAR-10, {args.probe_steps} steps in a fresh process")
        results[kind] = peak_memory(kind, args.probe_steps, overrides)
    bare, framework = results["bare"], results["framework"]
    rows = []
    for what, key in (("peak RSS (MB)", "rss_mb"), ("CUDA max allocated (MB)", "cuda_mb")):
        if bare.get(key):
            ratio = framework[key] / bare[key]
            rows.append(dict(what=what, bare=bare[key], framework=framework[key], ratio=ratio,
                             **goal(ratio, 2.0, below=True)))
    return rows


def memory_probe(kind: str, steps: int, overrides: list[str]) -> None:
    """The child of part_memory: the bare loop imports torch and torchvision only (its images
    decoded by torchvision, as a hand-written loop would); the framework runs a real Trainer
    with its callbacks, logger and checkpoints, validating on a few batches."""
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "bare":
        bare_memory_run(overrides, steps, device)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as out:
            framework_memory_run(overrides, steps, Path(out))
    result = {"rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        result["cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started its program. Linux's ru_maxrss
    would also count the benchmark's own peak before the fork that started this probe."""
    try:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024  # kB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def bare_memory_run(overrides: list[str], steps: int, device) -> None:
    import torch
    import torch.nn.functional as F
    from torchvision.io import ImageReadMode, decode_jpeg

    from resnet_exp.models.resnet import CifarResNet

    root = next((o.split("=", 1)[1] for o in overrides if o.startswith("data.root=")), None)
    if root is None:  # as Synthetic holds it: 60,000 uint8 32x32 images
        x = torch.randint(0, 256, (60000, 3, 32, 32), dtype=torch.uint8)
        y = torch.randint(0, 10, (60000,))
    else:
        files = sorted(Path(root).glob("*/*/*.jpg"))
        x = torch.empty((len(files), 3, 32, 32), dtype=torch.uint8)
        for start in range(0, len(files), 1024):
            chunk = [torch.frombuffer(bytearray(f.read_bytes()), dtype=torch.uint8)
                     for f in files[start: start + 1024]]
            x[start: start + len(chunk)] = torch.stack(decode_jpeg(chunk, mode=ImageReadMode.RGB))
        names = sorted({f.parent.name for f in files})
        y = torch.tensor([names.index(f.parent.name) for f in files])
    mean = torch.tensor([0.4914, 0.4822, 0.4465], device=device)[:, None, None]
    std = torch.tensor([0.2470, 0.2435, 0.2616], device=device)[:, None, None]
    model = CifarResNet(depth=56).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    order = torch.randperm(len(x))
    for step in range(steps):
        rows = order[step * 128: (step + 1) * 128]
        batch = (x[rows].to(device).float() / 255 - mean) / std
        loss = F.cross_entropy(model(batch), y[rows].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.inference_mode():
        for step in range(2):
            rows = order[step * 256: (step + 1) * 256]
            model((x[rows].to(device).float() / 255 - mean) / std).argmax(1)


def framework_memory_run(overrides: list[str], steps: int, out: Path) -> None:
    from hydra.utils import instantiate

    cfg = compose(overrides, out)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    module = instantiate(cfg.module, model=model, optimizer=instantiate(cfg.optimizer),
                         scheduler=instantiate(cfg.scheduler, _convert_="all"))
    callbacks = [instantiate(c) for k, c in (cfg.get("callbacks") or {}).items()
                 if c and k != "progress_bar"]
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values() if lg]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                          max_epochs=1, limit_train_batches=steps, limit_val_batches=2,
                          num_sanity_val_steps=0, enable_progress_bar=False)
    trainer.fit(module, datamodule=datamodule)


def part_startup(args, ctx, log) -> list[dict]:
    """Wall time of the CLI answering without running anything, median of several starts."""
    rows = []
    for label, cli in (("--help", ["--help"]), ("--cfg job", ["--cfg", "job"])):
        times = []
        for _ in range(args.startup_runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "resnet_exp", *cli], cwd=ROOT, check=True,
                           capture_output=True)
            times.append(time.perf_counter() - started)
        log(f"  python -m resnet_exp {label}: " + ", ".join(f"{t:.2f}" for t in times))
        rows.append(dict(command=f"python -m resnet_exp {label}", seconds=median(times),
                         best=min(times), **goal(median(times), 1.0, below=True)))
    return rows


# -- report -------------------------------------------------------------------------------------


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}
    from resnet_exp import speed

    info["bf16"] = "native" if speed.is_native(torch.bfloat16, "cpu") else "emulated"
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    import pytorch_lightning as pl

    info["lightning"] = pl.__version__
    return info


def load() -> float:
    return os.getloadavg()[0]


def fmt(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def goal(value: float | None, target: float, below: bool = False) -> dict:
    """A row's target and whether `value` meets it (issue 7's targets)."""
    met = None if value is None else (value <= target if below else value >= target)
    return {"target": f"{'<' if below else '>='} {target}", "met": met}


# part: title, then (column, row key, decimals); rows with a target also get "target" and "met"
TABLES = {
    "train": ("Training: framework (b) vs bare loop (a), images/s",
              [("case", "case", 0), ("bare (a)", "bare", 0), ("framework (b)", "framework", 0),
               ("b/a", "ratio", 3), ("rounds' b/a", "spread", 0)]),
    "options": ("Speed options: the framework's ResNet-20 training, CIFAR-10, batch 128",
                [("option", "option", 0), ("images/s", "rate", 0), ("vs fp32", "ratio", 2),
                 ("rounds'", "spread", 0)]),
    "compile": ("module.compile=true vs the uncompiled framework, images/s",
                [("case", "case", 0), ("plain", "plain", 0), ("compiled", "compiled", 0),
                 ("speed-up", "ratio", 2), ("rounds'", "spread", 0),
                 ("compile s", "compile_s", 1)]),
    "eval": ("Evaluation: trainer.validate (b) vs a bare inference_mode loop (a), images/s",
             [("case", "case", 0), ("bare (a)", "bare", 0), ("framework (b)", "framework", 0),
              ("b/a", "ratio", 3), ("rounds' b/a", "spread", 0)]),
    "data": ("Data path alone: CIFAR-10 training batches of 128, augmented on the device",
             [("path", "path", 0), ("images/s", "rate", 0),
              ("x ResNet-20 training", "vs_train", 1), ("workers", "workers", 0),
              ("set-up s", "setup_s", 1)]),
    "memory": ("Peak memory: ResNet-56 on CIFAR-10, each in a fresh process",
               [("", "what", 0), ("bare", "bare", 0), ("framework", "framework", 0),
                ("ratio", "ratio", 2)]),
    "startup": ("Start-up", [("command", "command", 0), ("median s", "seconds", 2),
                             ("best s", "best", 2)]),
}


def report(results: dict, info: dict, console) -> None:
    from rich.table import Table

    for part, rows in results.items():
        title, columns = TABLES[part]
        targets = any("target" in row for row in rows)
        table = Table(title=title, title_justify="left", header_style="bold")
        for i, (header, _, _) in enumerate(columns + ([("target", 0, 0), ("met", 0, 0)]
                                                      if targets else [])):
            table.add_column(header, justify="left" if i == 0 else "right")
        for row in rows:
            cells = [fmt(row.get(key), digits) for _, key, digits in columns]
            if targets:
                met = {True: "[green]yes[/green]", False: "[red]no[/red]"}.get(row.get("met"))
                cells += [row.get("target", ""), met or ""]
            table.add_row(*cells)
        console.print(table)
    console.print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))


# -- main ---------------------------------------------------------------------------------------


def quiet() -> None:
    """Lightning's per-fit notices ("GPU available", "does not have many workers") would bury
    the measurements; they concern set-up, which the timed windows leave out. Lightning sets its
    loggers' level when imported, hence the import first."""
    import pytorch_lightning  # noqa: F401

    for name in ("pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    warnings.filterwarnings("ignore", module="lightning_fabric")
    warnings.filterwarnings("ignore", module="torchmetrics")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default=",".join(PARTS),
                   help=f"comma-separated, from {','.join(PARTS)} (default: all)")
    p.add_argument("--rounds", type=int, default=5, help="measurements of each, median shown")
    p.add_argument("--seconds", type=float, default=2.5,
                   help="about how long one measurement runs")
    p.add_argument("--depths", default="20,56", help="CIFAR ResNet depths for train")
    p.add_argument("--eval-depths", default="20", help="CIFAR ResNet depths for eval")
    p.add_argument("--compile-depths", default="20", help="depths for the compile part")
    p.add_argument("--probe-steps", type=int, default=10, help="training steps of a memory probe")
    p.add_argument("--startup-runs", type=int, default=5)
    p.add_argument("--override", action="append", default=[],
                   help="a config override for every case, e.g. trainer.precision=bf16-mixed")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--memory-probe", choices=("bare", "framework"), help=argparse.SUPPRESS)
    p.add_argument("--probe-overrides", default="[]", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        p.error(f"unknown parts {sorted(unknown)}; choose from {','.join(PARTS)}")
    args.depths = [int(d) for d in args.depths.split(",") if d]
    args.compile_depths = [int(d) for d in args.compile_depths.split(",") if d]
    args.eval_depths = [int(d) for d in args.eval_depths.split(",") if d]
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.memory_probe:  # before anything imports Lightning: the bare probe must not
        memory_probe(args.memory_probe, args.probe_steps, json.loads(args.probe_overrides))
        return {}
    quiet()
    from rich.console import Console

    # wide enough for the tables when the output goes to a file (rich assumes 80 columns)
    console = Console() if sys.stdout.isatty() else Console(width=140)
    cache = ROOT / "outputs" / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="bench-", dir=cache))
    started, load_before = time.perf_counter(), load()
    info = machine()
    console.print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    console.print(f"load average at start: {load_before:.2f}")
    needs_data = bool(set(args.parts) - {"startup"})
    root = cifar_root(cache) if needs_data else None
    ctx = {"out": out, "cifar_root": root, "cifar": cifar_overrides(root),
           "extra": ["callbacks.progress_bar.leave=false", *args.override]}
    if needs_data:
        console.print(f"CIFAR-10: {root or 'not found, 32x32 synthetic images instead'}")
    parts = {"train": part_train, "options": part_options, "compile": part_compile,
             "eval": part_eval, "data": part_data, "memory": part_memory,
             "startup": part_startup}
    results: dict = {}
    try:
        for name in args.parts:
            console.rule(name)
            results[name] = parts[name](args, ctx, console.print)
    finally:
        shutil.rmtree(out, ignore_errors=True)  # the measured runs' TensorBoard files
    info["load average"] = f"{load_before:.2f} at start, {load():.2f} at end"
    info["bench minutes"] = f"{(time.perf_counter() - started) / 60:.1f}"
    console.rule("results")
    report(results, info, console)
    if load_before > 0.5 or load() > 0.5:
        console.print("[yellow]The machine was busy (load average > 0.5): absolute figures are "
                      "low; ratios of interleaved rounds are fairer.[/yellow]")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=1))
    return results


if __name__ == "__main__":
    main()
