"""What the framework costs over a bare PyTorch loop, and how fast its data path is.

    python scripts/bench.py                  # everything, a few minutes on 2 CPU cores
    python scripts/bench.py --parts train    # train, options, compile, eval, data, memory, startup
    python scripts/bench.py --synthetic --rounds 1 --seconds 0.05 --probe-steps 1 --startup-runs 1
                                             # every part runs (tests/test_combinations.py)
    make bench ARGS="--parts data,startup --rounds 5"

In one process, side by side on the same model, data and precision:
  (a) a bare loop: the model, SGD, cross-entropy, over the data module's own batches;
  (b) the framework: a real `pl.Trainer` with the config's callbacks and logger, training
      `resnet_exp.training.module.Classifier` on the same data module, all built by
      `resnet_exp.train.assemble` as a run builds them.
Both read the same batches through the same on-device preprocessing (uint8 -> float, augment), so
the ratio b/a is what Lightning and the module add per step; the data path is measured alone.
Warm-up steps come first (compilation, allocations, first-batch costs); a measurement spans
whole epochs where an epoch is shorter than it, so per-epoch costs count too. On a CPU, (a) and
(b) take turns step by step (Case.paired), so that other processes on a shared machine slow both
alike, and pairs in which a step stalled are left out; on a GPU whole measurements alternate.
Each figure is the median of --rounds rounds, with their range. Peak memory is taken in two
fresh processes (scripts/bench_memory.py: a peak cannot be reset within one).

(b) runs with `callbacks=lean` (no model summary, per-class figures or augmented samples, which
act once per fit or test; Lightning's own progress bar stands in for the config's) and with
validation and checkpointing off: the comparison is of training steps; evaluation is measured
on its own ("eval"). The GPU is used when there is one.

    bench_steps.py   the bare loop, the framework `Case`, paired and rotating rounds
    bench_parts.py   the parts, each a table's rows
    bench_memory.py  the peak-memory probe, run in a fresh process per kind
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CIFAR_TAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
PARTS = ("train", "options", "compile", "eval", "data", "memory", "startup")


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


# -- report -------------------------------------------------------------------------------------


def machine() -> dict:
    import pytorch_lightning as pl
    import torch

    from resnet_exp.training import speed

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}
    info["bf16"] = "native" if speed.is_native(torch.bfloat16, "cpu") else "emulated"
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
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
    """Lightning's per-fit notices ("GPU available", "does not have many workers", "Seed set")
    would bury the measurements; they concern set-up, which the timed windows leave out.
    Lightning sets its loggers' level when imported, hence the import first."""
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
    p.add_argument("--probe-steps", type=int, default=10,
                   help="training steps of a memory probe (scripts/bench_memory.py)")
    p.add_argument("--startup-runs", type=int, default=5)
    p.add_argument("--override", action="append", default=[],
                   help="a config override for every case, e.g. trainer.precision=bf16-mixed")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--synthetic", action="store_true",
                   help="32x32 synthetic images even where the CIFAR-10 copy is found")
    p.add_argument("--work", type=Path, default=ROOT / "outputs" / "bench",
                   help="where CIFAR-10 is extracted and the measured runs write (default: "
                        "outputs/bench)")
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
    quiet()
    # here, not at the top: --help and a bad argument answer without importing torch
    from bench_parts import RUNNERS, BenchContext
    from rich.console import Console

    # wide enough for the tables when the output goes to a file (rich assumes 80 columns)
    console = Console() if sys.stdout.isatty() else Console(width=140)
    cache = args.work
    cache.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="bench-", dir=cache))
    started, load_before = time.perf_counter(), load()
    info = machine()
    console.print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    console.print(f"load average at start: {load_before:.2f}")
    needs_data = bool(set(args.parts) - {"startup"})
    root = cifar_root(cache) if needs_data and not args.synthetic else None
    ctx = BenchContext(out=out, cifar_root=root, overrides=list(args.override))
    if needs_data:
        why = "--synthetic" if args.synthetic else "not found"
        console.print(f"CIFAR-10: {root or f'{why}, 32x32 synthetic images instead'}")
    results: dict = {}
    try:
        for name in args.parts:
            console.rule(name)
            results[name] = RUNNERS[name](args, ctx, console.print)
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
