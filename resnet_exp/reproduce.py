"""`python -m resnet_exp.reproduce RUN_DIR [overrides] [--trust]`: run a finished run again.

Replays the run's saved overrides (runs/replay.py: older layouts, allow-list, drift warning) plus
any given, as a new run in a new folder whose run.json records `reproduces: RUN_DIR`, then prints
its final metrics beside the original's. With `deterministic=true` a CPU run reproduces every
metric exactly (tests/test_reproduce.py); the time/* entries measure the machine, not the run.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from resnet_exp.core.console import command
from resnet_exp.runs import migrate, read
from resnet_exp.runs.replay import replay

IGNORED_PREFIXES = ("time/",)  # wall-clock measurements differ between any two runs


def compare(original: dict, new: dict) -> tuple[list[tuple[str, object, object, str]], int]:
    """Rows (metric, original, new, difference) over the scalar metrics of either run, and the
    number of differing ones, time/* aside. A metric only the new run has is `new`, not a
    difference: the code that reproduces records more than the run's own did (an older run)."""
    rows, differ = [], 0
    for key in [k for k in original if k in new] + [k for k in new if k not in original] + [
            k for k in original if k not in new]:
        a, b = original.get(key), new.get(key)
        if isinstance(a, dict) or isinstance(b, dict):
            continue
        if key not in original:
            rows.append((key, a, b, "new"))
            continue
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            same = a == b or (math.isnan(a) and math.isnan(b))
            diff = "=" if same else f"{b - a:+.6g}"
        else:
            same = a == b
            diff = "=" if same else "missing"
        if not same and not key.startswith(IGNORED_PREFIXES):
            differ += 1
        rows.append((key, a, b, diff))
    return rows, differ


def print_comparison(run_dir: Path, new_dir: Path, original: dict, new: dict) -> int:
    from rich.table import Table

    from resnet_exp.core.console import console, literal

    rows, differ = compare(original, new)
    table = Table(title=f"reproduction of {literal(run_dir)}", header_style="bold")
    for column, justify in (("metric", "left"), ("original", "right"),
                            ("reproduced", "right"), ("difference", "right")):
        table.add_column(column, justify=justify)
    for key, a, b, diff in rows:
        style = None if diff in ("=", "new") or key.startswith(IGNORED_PREFIXES) else "bold red"
        table.add_row(literal(key), _fmt(a), _fmt(b), diff, style=style)
    console.print(table)
    compared = sum(not k.startswith(IGNORED_PREFIXES) and diff != "new" for k, _, _, diff in rows)
    verdict = (f"identical: all {compared} metrics (time/* aside)" if differ == 0
               else f"{differ} of {compared} metrics differ")
    console.print(f"{verdict}; new run: {literal(new_dir)}")
    return differ


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def reproduce(run_dir: Path, overrides: list[str],
              trust: bool = False) -> tuple[Path, dict, dict]:
    """Run RUN_DIR's config again as a new run; returns its folder, its metrics and the
    original's ({} for a run that did not finish: a note says so before the new one starts)."""
    from resnet_exp.api import run

    run_dir = Path(run_dir).resolve()
    replayed, _ = replay(run_dir, overrides, trust)  # a refused or unreadable folder: nothing runs
    original = migrate.read_metrics(run_dir)
    if not original:
        print(f"note: {run_dir} has no metrics.json (status: {read.run_status(run_dir)}): "
              "nothing to compare with", file=sys.stderr)
    new = run(replayed, note={"reproduces": str(run_dir)})
    return new.dir, new.metrics, original


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m resnet_exp.reproduce",
        description="Run a finished run again from its saved config and compare the metrics.")
    parser.add_argument("run_dir", type=Path, help="the run folder to reproduce")
    parser.add_argument("overrides", nargs="*", help="extra overrides, e.g. trainer.max_epochs=2")
    parser.add_argument("--trust", action="store_true",
                        help="accept _target_ entries outside the allow-list (runs/trust.py)")
    args = parser.parse_intermixed_args(argv)
    new_dir, metrics, original = reproduce(args.run_dir, args.overrides, trust=args.trust)
    if original:
        print_comparison(args.run_dir, new_dir, original, metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
