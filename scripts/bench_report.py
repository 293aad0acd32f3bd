"""How long `python -m resnet_exp.report` takes over many runs, and what the gradient-flow
scalars would cost its curve reading if they shared the run's event file.

    python scripts/bench_report.py                      # 200 runs x 30 epochs, ~1-2 min to build
    python scripts/bench_report.py --runs 50 --epochs 164 --steps 391

Builds fake-but-real-format run folders (run.json, metrics.json, .hydra/, TensorBoard events
written by torch's SummaryWriter like Lightning's logger) in a temporary folder, then times:
the table alone (--no-figures), the full report with event files read serially and in a process
pool, and one run's curves with and without per-layer gradient scalars in the same event file.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml
from torch.utils.tensorboard import SummaryWriter

from resnet_exp import report, runs
from resnet_exp.runs import compare, read, record


def make_run(folder: Path, depth: int, residual: str, seed: int, epochs: int, steps: int,
             layers: int = 0, layers_apart: bool = True) -> None:
    overrides = ["model=vgg", f"model.depth={depth}", f"model.residual={residual}",
                 f"seed={seed}"]
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {"model": {"_target_": "resnet_exp.models.vgg.VGG", "depth": depth,
                        "residual": residual == "true"}, "seed": seed}
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    acc = 0.5 + depth / 1000 * (1 if residual == "true" else -1)
    record.write_json_atomic(folder / runs.RUN_FILE, {"status": "finished", "seed": seed})
    record.write_json_atomic(folder / runs.METRICS_FILE,
                             {"test/acc": acc, "best_epoch": epochs - 1})
    writer = SummaryWriter(str(folder / runs.TENSORBOARD_DIR))
    flow = writer if not layers_apart else SummaryWriter(
        str(folder / runs.TENSORBOARD_DIR / "gradient_flow"))
    for epoch in range(epochs):
        for step in range(epoch * steps, (epoch + 1) * steps):
            if step % 50 == 0:  # Lightning's log_every_n_steps and the callback's interval
                writer.add_scalar("train/loss_step", 2.0, step)
                writer.add_scalar("epoch", epoch, step)
                for i in range(layers):
                    flow.add_scalar(f"gradient_flow/mean_abs/{i:03d}_layer", 1e-3, step)
                    flow.add_scalar(f"gradient_flow/l2_norm/{i:03d}_layer", 1e-2, step)
        end = (epoch + 1) * steps - 1
        for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "epoch"):
            writer.add_scalar(tag, acc * (epoch + 1) / epochs, end)
    writer.close()
    flow.close()


def timed(label: str, fn) -> float:
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    print(f"{label:<72} {seconds:7.2f} s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per epoch")
    parser.add_argument("--layers", type=int, default=110,
                        help="weight layers for the gradient-flow comparison (ResNet-110)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "outputs"
        started = time.perf_counter()
        for i in range(args.runs):
            depth, residual = (8, 20, 38, 56, 68)[i % 5], ("false", "true")[i // 5 % 2]
            make_run(root / "multirun" / "sweep" / str(i), depth, residual, i // 10,
                     args.epochs, args.steps)
        print(f"built {args.runs} runs x {args.epochs} epochs x {args.steps} steps in "
              f"{time.perf_counter() - started:.1f} s")
        out = Path(tmp) / "reports"
        timed(f"report, table only ({args.runs} runs)",
              lambda: report.report([str(root)], out / "a", figures=False))
        parallel_from = compare.PARALLEL_FROM
        compare.PARALLEL_FROM = 10**9
        timed("report with figures, event files read serially",
              lambda: report.report([str(root)], out / "b"))
        compare.PARALLEL_FROM = parallel_from
        timed("report with figures, event files read in a process pool",
              lambda: report.report([str(root)], out / "c"))

        for apart in (True, False):
            folder = Path(tmp) / f"flow_{apart}"
            make_run(folder, 110, "true", 0, args.epochs, args.steps, args.layers, apart)
            where = "a file of their own" if apart else "the run's event file"
            timed(f"one run's curves, {args.layers} layers' gradient scalars in {where}",
                  lambda folder=folder: read.read_scalars(folder))


if __name__ == "__main__":
    main()
