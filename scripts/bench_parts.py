"""The parts of scripts/bench.py, one function each: part_<name>(args, ctx, log) -> table rows.

Each row is a dict of the columns `bench.TABLES` names; a row with a target also carries
"target" and "met" (`goal`). The parts share a `BenchContext`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import torch
from bench_steps import Case, calibrate, compare, data_rate, ratios, rounds

from resnet_exp.core.config import compose
from resnet_exp.data import DataModule
from resnet_exp.train import assemble
from resnet_exp.training import speed

ROOT = Path(__file__).resolve().parents[1]
MEMORY_PROBE = Path(__file__).resolve().with_name("bench_memory.py")


def cifar_overrides(root: Path | None, in_memory: bool = True) -> list[str]:
    """CIFAR-10 from the JPEG copy (decoded into memory, or read from the files by DataLoader
    workers), or 32x32 synthetic images where there is no copy."""
    if root is not None:
        return ["data=imagefolder", f"data.root={root}", f"data.in_memory={str(in_memory).lower()}"]
    return ["data=synthetic", "data.num_train=45000", "data.num_val=5000", "data.num_test=10000"]


@dataclass
class BenchContext:
    """What the parts share: where the measured runs write, the data, the user's overrides,
    and what one part leaves for the next."""

    out: Path  # the measured runs' folder (their TensorBoard files), removed at the end
    cifar_root: Path | None  # the CIFAR-10 JPEG copy; None: synthetic 32x32 images instead
    overrides: list[str]  # --override: config overrides for every case
    cifar_dm: DataModule | None = None  # one CIFAR-10 data module, set up, for every case
    resnet20_train: float | None = None  # the framework's ResNet-20 CIFAR-10 images/s (train)

    @property
    def cifar(self) -> list[str]:
        return cifar_overrides(self.cifar_root)

    def case(self, label: str, overrides: list[str]) -> Case:
        """A case on CIFAR-10 with the user's overrides, sharing the CIFAR-10 data module."""
        case = Case(label, [*overrides, *self.cifar, *self.overrides], self.out, self.cifar_dm)
        self.cifar_dm = case.datamodule
        return case


def goal(value: float | None, target: float, below: bool = False) -> dict:
    """A row's target and whether `value` meets it."""
    met = None if value is None else (value <= target if below else value >= target)
    return {"target": f"{'<' if below else '>='} {target}", "met": met}


def part_train(args, ctx: BenchContext, log) -> list[dict]:
    """Bare loop vs framework, per model; the small model is the default run's."""
    rows = []
    labels = [(f"ResNet-{depth}, CIFAR-10, batch 128", depth) for depth in args.depths]
    for label, depth in [("ResNet-20, digits 8x8, batch 64 (default run)", None), *labels]:
        log(f"  {label}")
        if depth is None:
            case, target = Case(label, ["model=resnet20", *ctx.overrides], ctx.out), 0.95
        else:
            case, target = ctx.case(label, [f"model=resnet{depth}", "augmentation=standard"]), 0.97
        warmup, steps = calibrate(case.bare, case.batch_size, args.seconds)
        row = compare(case, args.rounds, warmup, steps, log)
        rows.append(dict(case=label, steps=f"{warmup}+{steps} x {args.rounds}", **row,
                         **goal(row["ratio"], target)))
        if depth == 20:
            ctx.resnet20_train = row["framework"]
    return rows


def part_options(args, ctx: BenchContext, log) -> list[dict]:
    """Each speed option's effect on the framework's ResNet-20 training, against fp32 NCHW."""
    base = ["model=resnet20", "augmentation=standard"]
    variants = {"fp32": [], "channels_last": ["module.channels_last=true"],
                "bf16-mixed": ["trainer.precision=bf16-mixed"],
                "channels_last + bf16": ["module.channels_last=true",
                                         "trainer.precision=bf16-mixed"]}
    cases = {name: ctx.case(name, base + extra) for name, extra in variants.items()}
    device = cases["fp32"].device
    native = speed.is_native(torch.bfloat16, device.type)
    log(f"  bf16 native on this {device.type}: {native}")
    warmup, steps = calibrate(cases["fp32"].framework, cases["fp32"].batch_size, args.seconds)
    if not native:  # emulated bf16 is ~15x slower: a few steps say so
        steps = max(2, steps // 8)
    rates = rounds({n: c.framework for n, c in cases.items()}, args.rounds, warmup, steps, log)
    return [dict(option=n, rate=median(r), **ratios(rates["fp32"], r)) for n, r in rates.items()]


def part_compile(args, ctx: BenchContext, log) -> list[dict]:
    """`module.compile=true` against the uncompiled framework, training and eval, per model."""
    rows = []
    for depth in args.compile_depths:
        base = [f"model=resnet{depth}", "augmentation=standard"]
        plain = ctx.case("plain", base)
        compiled = ctx.case("compiled", base + ["module.compile=true"])
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


def part_eval(args, ctx: BenchContext, log) -> list[dict]:
    """Evaluation: bare `inference_mode` loop vs `trainer.validate`, at the eval batch size."""
    rows = []
    for depth in args.eval_depths:
        case = ctx.case(f"ResNet-{depth}", [f"model=resnet{depth}"])
        label = f"ResNet-{depth}, batch {case.datamodule.eval_batch_size}"
        log(f"  {label}")
        warmup, steps = calibrate(case.bare_eval, case.datamodule.eval_batch_size, args.seconds)
        steps = min(steps, len(case.datamodule.val_dataloader()) - warmup)
        row = compare(case, args.rounds, warmup, steps, log, train=False)
        rows.append(dict(case=label, **row))
    return rows


def part_data(args, ctx: BenchContext, log) -> list[dict]:
    """The training data path alone: the in-memory set (one uint8 tensor, batched augmentation
    on the device) and the folder path (files decoded per image in DataLoader workers)."""
    rows = []
    paths = {"in-memory (one uint8 tensor)": cifar_overrides(ctx.cifar_root, in_memory=True)}
    if ctx.cifar_root is not None:
        paths["folder (JPEG files, DataLoader workers)"] = cifar_overrides(ctx.cifar_root,
                                                                           in_memory=False)
    for label, data in paths.items():
        cfg = compose(["callbacks=lean", "augmentation=standard", *data, *ctx.overrides],
                      ctx.out)
        parts = assemble(cfg, testing=False)  # the data module and the device a run would use
        datamodule, device = parts.datamodule, parts.trainer.strategy.root_device
        started = time.perf_counter()
        datamodule.setup("fit")
        setup_s = time.perf_counter() - started
        batches = 300 if "in-memory" in label else 60
        rates = []
        for r in range(args.rounds):
            rates.append(data_rate(datamodule, device, batches))
            log(f"  {label}: round {r + 1}: {rates[-1]:,.0f} img/s")
        workers = datamodule.train_dataloader().num_workers
        train = ctx.resnet20_train  # from the train part, when it ran
        vs_train = median(rates) / train if train else None
        rows.append(dict(path=label, rate=median(rates), setup_s=setup_s, workers=workers,
                         vs_train=vs_train, **(goal(vs_train, 50.0) if "memory" in label
                                               else {})))
    return rows


def peak_memory(kind: str, steps: int, overrides: list[str]) -> dict:
    """The peak memory of `steps` training steps in a fresh process (scripts/bench_memory.py):
    a process's peak cannot be reset, and this one's holds the other parts' data."""
    command = [sys.executable, str(MEMORY_PROBE), kind, "--steps", str(steps), "--", *overrides]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe {kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def part_memory(args, ctx: BenchContext, log) -> list[dict]:
    overrides = ["model=resnet56", "augmentation=standard", *ctx.cifar, *ctx.overrides]
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


def part_startup(args, ctx: BenchContext, log) -> list[dict]:
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


RUNNERS = {"train": part_train, "options": part_options, "compile": part_compile,
           "eval": part_eval, "data": part_data, "memory": part_memory, "startup": part_startup}
