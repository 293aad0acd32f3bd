"""`python -m resnet_exp.eval RUN_DIR [--last] [--trust] [overrides]`: test a run's checkpoint.

Tests the best checkpoint (`--last`: the last one) on the run's own test set, or on another with
overrides such as `data=cifar10` or `trainer.limit_test_batches=1.0`, into a folder of its own,
`RUN_DIR/eval/<date>_<time>[_<data>]/`: metrics.json with the keys of the run's own test
(`test/*`, `test_last/*` with --last), run.json, .hydra/, tensorboard/ and the figures of the
run's test callbacks. On its own test set it gives exactly the metrics the run recorded.

The run is read by runs/load.py: its config rebuilt from its saved overrides (allow-list, drift
warning, older layouts), the checkpoint read with weights_only=True, fitting the model it builds.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

from resnet_exp import runs
from resnet_exp.core.config import overrides_dict
from resnet_exp.core.console import command
from resnet_exp.runs.load import load
from resnet_exp.runs.record import RunRecord


def output_dir(run_dir: Path, overrides: list[str]) -> Path:
    data = overrides_dict(overrides).get("data")
    name = datetime.now().strftime("%Y-%m-%d_%H-%M-%S") + (f"_{data}" if data else "")
    return Path(run_dir) / "eval" / name


def evaluate(run_dir: Path, overrides: list[str], last: bool = False,
             trust: bool = False) -> tuple[dict, Path]:
    """Test the run's best (or last) checkpoint; returns the metrics and the eval folder."""
    run_dir = Path(run_dir)
    out = output_dir(run_dir, overrides)
    # the run's callbacks draw the same test figures, into `out`; none writes before the test
    loaded = load(run_dir, "last" if last else "best", overrides, trust, output_dir=out)
    record = RunRecord(out)
    record.start(seed=loaded.task.seed, extra={
        "evaluates": str(run_dir.resolve()), "checkpoint": str(loaded.checkpoint),
        "overrides": loaded.overrides})
    with record.recording():
        (out / runs.CONFIG_FILE).parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(loaded.task, out / runs.CONFIG_FILE)
        OmegaConf.save(OmegaConf.create(loaded.overrides), out / runs.OVERRIDES_FILE)
        parts = loaded.parts
        with parts.module.tested_as("test_last" if last else "test"):
            metrics = dict(parts.trainer.test(parts.module, datamodule=parts.datamodule,
                                              verbose=False)[0])
        for each in parts.extensions:  # per-class results (runs/extension.py)
            metrics.update(each.results())
        metrics["checkpoint_epoch"] = loaded.epoch
        record.finish(metrics)
    return metrics, out


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m resnet_exp.eval",
        description="Test a run's best (or last) checkpoint into RUN_DIR/eval/<date>_<time>/.")
    parser.add_argument("run_dir", type=Path, help="the run folder")
    parser.add_argument("overrides", nargs="*",
                        help="config overrides, e.g. data=cifar10 trainer.limit_test_batches=1.0")
    parser.add_argument("--last", action="store_true", help="the last checkpoint, not the best")
    parser.add_argument("--trust", action="store_true",
                        help="accept _target_ entries outside the allow-list (runs/trust.py)")
    args = parser.parse_intermixed_args(argv)
    metrics, out = evaluate(args.run_dir, args.overrides, last=args.last, trust=args.trust)
    from resnet_exp.core import console

    rows = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    console.print_summary(f"{args.run_dir.name}: {'last' if args.last else 'best'} checkpoint",
                          rows, {"eval folder": out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
