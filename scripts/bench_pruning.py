"""What pruning saves an Optuna search: the same search with each pruner and without.

    OMP_NUM_THREADS=1 nice python scripts/bench_pruning.py             # ~3 min a pruner, on 1 core
    python scripts/bench_pruning.py --trials 8 --epochs 6 --seeds 1    # a quick look
    python scripts/bench_pruning.py --pruners median,successive_halving,hyperband
    python scripts/bench_pruning.py data=imagefolder data.root=/tmp/cifar10-jpeg \
        data.max_per_class=500 data.val_size=1000 augmentation=standard   # the CIFAR-10 copy

Runs `python -m resnet_exp hparams_search=cifar_resnet` as a user does on the embedded digits
(ResNet-20, `callbacks=lean`, `trainer.max_epochs=EPOCHS`; overrides given after the options
replace the data), TPE with the same seed, with each of `--pruners` (`hydra/sweeper/pruner=`;
median, the default, lets 5 trials run unpruned, then stops a trial whose val/acc at an epoch
is below the earlier trials' median there, epochs 0-1 never), then without pruning (`none`).
For each: epochs trained over all trials (from each run's metrics.json), wall time, trials
pruned, best val/acc. Then the seed-to-seed spread of that number: the unpruned search's best
parameters trained again with `--seeds` other seeds. The target (docs/scaling.md): at most half
the epochs, a best val/acc within that spread.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from resnet_exp import runs
from resnet_exp.core.config import text
from resnet_exp.runs import read

ROOT = Path(__file__).resolve().parents[1]


def cli(args: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "resnet_exp", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def search(pruner: str, trials: int, epochs: int, cwd: Path, extra: list[str]) -> dict:
    import optuna

    sweep = cwd / pruner
    seconds = cli(["hparams_search=cifar_resnet", "callbacks=lean", f"trainer.max_epochs={epochs}",
                   f"hydra/sweeper/pruner={pruner}", f"hydra.sweeper.n_trials={trials}",
                   f"hydra.sweep.dir={sweep}", *extra], cwd)
    study = optuna.load_study(study_name="cifar_resnet", storage=f"sqlite:///{sweep}/optuna.db")
    jobs = read.find_runs(sweep)
    trained = sum(read.read_json(job / runs.METRICS_FILE)["epochs"] for job in jobs
                  if (job / runs.METRICS_FILE).exists())
    states = [t.state.name for t in study.trials]
    for job in jobs:  # what made a trial fail, for the record
        info = read.read_json(job / runs.RUN_FILE)
        if info["status"] == "failed":
            print(f"{pruner}: {job.name} failed: {info['error']}")
    return {"pruner": pruner, "epochs": trained, "seconds": seconds,
            "pruned": states.count("PRUNED"), "failed": states.count("FAIL"),
            "best": study.best_value, "params": study.best_params}


def spread(params: dict, seeds: int, epochs: int, cwd: Path, extra: list[str]) -> list[float]:
    """val/acc_best of `params` trained again with seeds 1..seeds (the searches used 42)."""
    values = []
    for seed in range(1, seeds + 1):
        run = cwd / f"seed{seed}"
        cli(["callbacks=lean", f"trainer.max_epochs={epochs}", f"seed={seed}",
             f"hydra.run.dir={run}", *(f"{k}={text(v)}" for k, v in params.items()), *extra],
            cwd)
        values.append(read.read_json(run / runs.METRICS_FILE)["val/acc_best"])
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pruners", default="median",
                        help="conf/hydra/sweeper/pruner/ options, comma-separated, each against "
                             "none")
    parser.add_argument("overrides", nargs="*", help="e.g. data=imagefolder data.root=...")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        results = [search(p, args.trials, args.epochs, cwd, args.overrides)
                   for p in [*(p for p in args.pruners.split(",") if p != "none"), "none"]]
        without = results[-1]
        again = spread(without["params"], args.seeds, args.epochs, cwd, args.overrides)
    print(f"{args.trials} trials x {args.epochs} epochs, ResNet-20, TPE seed 0, "
          f"{' '.join(args.overrides) or 'the digits'}")
    print(f"{'pruner':8} {'epochs':>6} {'wall s':>7} {'pruned':>6} {'failed':>6} "
          f"{'best val/acc':>12}")
    for r in results:
        print(f"{r['pruner']:8} {r['epochs']:6d} {r['seconds']:7.0f} {r['pruned']:6d} "
              f"{r['failed']:6d} {r['best']:12.4f}")
    for r in results[:-1]:
        print(f"{r['pruner']}: epochs with / without pruning "
              f"{r['epochs'] / without['epochs']:.2f}, "
              f"wall time {r['seconds'] / without['seconds']:.2f}, best val/acc without - with "
              f"{without['best'] - r['best']:+.4f}")
    print(f"the unpruned best parameters with seeds 1-{args.seeds}: "
          + ", ".join(f"{v:.4f}" for v in again)
          + (f" (mean {statistics.fmean(again):.4f}, std {statistics.pstdev(again):.4f}, "
             f"range {max(again) - min(again):.4f})" if len(again) > 1 else ""))


if __name__ == "__main__":
    main()
