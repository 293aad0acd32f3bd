"""`python -m resnet_exp.report PATH... [--out DIR] [--metric NAME ...] [--baseline KEY=VALUE]
[--compare A B] [--all] [--no-figures]`

Compares runs the way a paper's table and figures do. PATHs are run folders, sweep folders, or
any folder holding them (e.g. `outputs/`), and globs. Runs are grouped into configurations by
the values of the keys their overrides set, `seed` left out: one row per configuration with its
metrics as mean +- std over the seeds of its finished runs, the 95% confidence interval of the
mean (Student t, n - 1 degrees of freedom) and n. Failed and interrupted runs are left out and
counted in one line (`--all` brings them, listed with their status and error); runs that did
not finish otherwise (running, pruned) are counted and listed apart, never averaged in.
`--baseline trick=baseline` makes it an ablation table: each row also gets, per metric, the
difference of its mean to the mean of the row that has trick=baseline and the same other values.
`--compare A B`: Welch's t-test of the first metric between two configurations, each named by
its row number (#) or by words of its label (`model=resnet20`, or `resnet20` where one row has it).

Writes report.md, report.tex (booktabs), report.csv (one row per configuration), runs.csv (one
row per run) and the figures as PNG, PDF and SVG into its own folder (default
outputs/reports/<date>_<time>/; the figures: resnet_exp/runs/report_figures.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from resnet_exp.core.console import command
from resnet_exp.core.errors import UserError
from resnet_exp.runs import read, report_console, report_figures, report_files
from resnet_exp.runs.compare import Configuration, Run, group, read_run
from resnet_exp.runs.report_rows import cell, table_rows
from resnet_exp.runs.stats import Welch, welch

DEFAULT_METRICS = ("test/acc", "test_last/acc", "val/acc_best", "best_epoch", "params/trainable",
                   "time/total_s")
# What a report leaves out unless --all: a failed run's folder may hold a typo'd key, which would
# become a column of its own (+trainer.max_epoch=3) and a row with n = 0
LEFT_OUT = ("failed", "interrupted")


# -- --compare A B ------------------------------------------------------------------------------

def named(configs: list[Configuration], text: str) -> int:
    """The configuration `text` names: its row number, or words each of which is one of its
    values or `key=value` pairs, else a part of its label that no other label holds. A name
    that fits two rows (`2`: row 2, and model.depth=2 of row 1) is refused, never guessed."""
    rows = {int(text) - 1} if text.isdigit() and 0 < int(text) <= len(configs) else set()
    words = text.split()
    fits = {i for i, c in enumerate(configs)
            if all(w in {*c.values.values(), *(f"{k}={v}" for k, v in c.values.items())}
                   for w in words)}
    if not rows and not fits:
        fits = {i for i, c in enumerate(configs) if text in c.label}
    if len(rows | fits) == 1:
        return (rows | fits).pop()
    listing = ", ".join(f"{i} {c.label}" for i, c in enumerate(configs, 1))
    why = ("names no configuration" if not rows | fits else
           f"fits rows {' and '.join(str(i + 1) for i in sorted(rows | fits))}")
    raise UserError(f"--compare {text}: {why}; give a row number or words of one label "
                    f"(key=value where a value is also a row number): {listing}")


def compared(configs: list[Configuration], names: list[str], metric: str):
    """The two configurations `--compare` names, by row, and Welch's test of `metric` between
    them (None where every seed of both gave the same value)."""
    a, b = (named(configs, text) for text in names)
    if a == b:
        raise UserError(f"--compare {' '.join(names)}: both name row {a + 1} "
                        f"({configs[a].label}); name two configurations")
    pair = [configs[a].stats(metric), configs[b].stats(metric)]
    for i, found in zip((a, b), pair, strict=True):
        if found is None or found[2] < 2:
            raise UserError(f"--compare: Welch's t-test needs 2 finished runs or more with "
                            f"{metric} in each configuration; row {i + 1} ({configs[i].label}) "
                            f"has {found[2] if found else 0}")
    return a, b, welch(*pair)


def welch_line(configs: list[Configuration], metric: str, a: int, b: int,
               test: Welch | None) -> str:
    sides = " vs ".join(f"row {i + 1} {configs[i].label} ({cell(configs[i].stats(metric))}, "
                        f"n={configs[i].stats(metric)[2]})" for i in (a, b))
    if test is None:
        return f"Welch's t-test of {metric}, {sides}: not defined, no spread over the seeds"
    return (f"Welch's t-test of {metric}, {sides}: t = {test.t:.4g}, dof = {test.dof:.3g}, "
            f"p = {test.p:.3g} (two-sided)")


# -- which runs, which metrics -------------------------------------------------------------------

def with_tags(runs: list, tags: list[str]) -> list:
    """The runs whose `tags=[...]` hold every one of `tags`."""
    kept = [r for r in runs if set(tags) <= set(map(str, r.config.get("tags") or []))]
    if not kept:
        seen = sorted({str(t) for r in runs for t in r.config.get("tags") or []})
        raise UserError(f"--tag {' --tag '.join(tags)}: no run has "
                        f"{'them' if len(tags) > 1 else 'it'}; the runs' tags are "
                        f"{', '.join(seen) or '(none)'}")
    return kept


def without_failed(runs: list[Run]) -> tuple[list[Run], str | None]:
    """The runs a report shows without --all, and the line that counts the others."""
    gone = Counter(r.status for r in runs if r.status in LEFT_OUT)
    if not gone:
        return runs, None
    counts = ", ".join(f"{gone[s]} {s}" for s in LEFT_OUT if gone[s])
    kept = [r for r in runs if r.status not in LEFT_OUT]
    if not kept:
        raise UserError(f"every run here ended without finishing ({counts}); --all reports "
                        "them with their errors")
    n = sum(gone.values())
    return kept, (f"Left out {n} run{'s' * (n > 1)} that did not finish: {counts} (--all "
                  f"brings {'them' if n > 1 else 'it'}).")


def chosen_metrics(runs: list[Run], metrics: list[str] | None) -> list[str]:
    present = {k for r in runs for k in r.metrics}
    if not metrics:
        return [m for m in DEFAULT_METRICS if m in present] or list(DEFAULT_METRICS[:1])
    unknown = [m for m in metrics if m not in present]
    if unknown and any(r.done for r in runs):
        raise UserError(f"--metric {' '.join(unknown)}: no run has it; the runs' metrics are "
                        f"{', '.join(sorted(k for k in present if '/' in k))}")
    return metrics


def staged(out: Path) -> Path:
    """A hidden folder beside `out` to write the report into, moved into place when done."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    except OSError as e:
        raise UserError(f"--out {out}: cannot write there ({e.strerror or e}): give a folder "
                        "that can be written, or leave --out to its default") from None


def put_in_place(staging: Path, out: Path) -> None:
    if out.exists():  # --out given again: the new report replaces the old one's files
        for old in staging.iterdir():
            os.replace(old, out / old.name)
        staging.rmdir()
    else:
        os.replace(staging, out)


# -- progress: reading many runs and their curves takes seconds to minutes ------------------------

@contextmanager
def progress(console, total: int) -> Iterator[Callable[[int, str], None]]:
    """A bar on a terminal (gone once done); yields `at(i, what)`: part i of `total` has begun,
    and is `what`. Piped, no bar: `said` prints a line per part done, as the analyses do
    (analysis/__init__.py)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True,
                  disable=not console.is_terminal) as bar:
        task = bar.add_task("", total=total)
        # drawn at once: a part that takes minutes shows what it is from its start
        yield lambda i, what: bar.update(task, completed=i, description=what, refresh=True)


def said(console, what: str, started: float) -> None:
    console.print(f"report: {what} in {time.perf_counter() - started:.1f} s", markup=False,
                  highlight=False, soft_wrap=True)


def read_runs(console, paths: list[Path]) -> list[Run]:
    started, runs = time.perf_counter(), []
    with progress(console, len(paths)) as at:
        for i, path in enumerate(paths):
            at(i, f"reading runs: {path.name}")
            runs.append(read_run(path))
    said(console, f"read {len(paths)} run{'s' * (len(paths) != 1)}", started)
    return runs


def draw(console, configs: list[Configuration], metric: str, out: Path) -> list[tuple[str, str]]:
    """The figures (report_figures.py), a kind at a time; piped, a line for each kind drawn."""
    kinds, drawn = report_figures.steps(configs, metric, out), []
    with progress(console, len(kinds)) as at:
        for i, (what, make) in enumerate(kinds):
            at(i, f"drawing {what}")
            started = time.perf_counter()
            files = make()
            if files:
                said(console, ", ".join(name for _, name in files), started)
            drawn += files
    return drawn


def report(patterns: list[str], out: Path | None = None, metrics: list[str] | None = None,
           figures: bool = True, argv: list[str] | None = None,
           tags: list[str] | None = None, baseline: str | None = None,
           everything: bool = False, compare: list[str] | None = None,
           console=None) -> Path:
    """Table, files and figures of the runs under `patterns` (those with every tag in `tags`;
    failed and interrupted ones only if `everything`), into `out`; printed to `console`
    (console.py's by default). The folder appears only once everything in it is written: a
    failed report leaves none behind."""
    from resnet_exp.core import console as consoles

    console = console or consoles.console
    all_runs = read_runs(console, read.collect(patterns))
    if tags:
        all_runs = with_tags(all_runs, tags)
    shown, note = (all_runs, None) if everything else without_failed(all_runs)
    configs, common = group(shown)
    metrics = chosen_metrics(shown, metrics)
    notes = [note] if note else []
    if compare:
        notes.append(welch_line(configs, metrics[0], *compared(configs, compare, metrics[0])))
    out = Path(out or Path("outputs") / "reports" / f"{datetime.now():%Y-%m-%d_%H-%M-%S}")
    built = table_rows(configs, metrics, baseline)  # the console's rows, and the files'
    report_console.print_report(console, configs, common, metrics, built, baseline, notes)
    staging = staged(out)
    try:
        drawn = draw(console, configs, metrics[0], staging) if figures else []
        argv = argv or patterns
        report_files.write_csvs(staging, configs, metrics, built, baseline)
        report_files.write_latex(staging, configs, common, metrics, built, baseline, argv)
        report_files.write_markdown(staging, configs, common, metrics, built, drawn, argv,
                                    baseline, notes)
        put_in_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m resnet_exp.report", description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="run folders, sweep folders, folders holding them, or globs")
    parser.add_argument("--out", type=Path, help="output folder (default "
                        "outputs/reports/<date>_<time>/)")
    parser.add_argument("--metric", action="append", dest="metrics", metavar="NAME",
                        help=f"a metrics.json key to tabulate, repeatable; the first is plotted "
                             f"and tested by --compare (default: {', '.join(DEFAULT_METRICS)})")
    parser.add_argument("--tag", action="append", dest="tags", metavar="TAG",
                        help="only the runs started with this tag (tags=[...]), repeatable")
    parser.add_argument("--baseline", metavar="KEY=VALUE",
                        help="an ablation: each row's difference to the row with KEY=VALUE and "
                             "the same other settings (e.g. trick=baseline)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="Welch's t-test of the first metric between two configurations, "
                             "each a row number (#) or words of its label: '--compare 1 2', "
                             "'--compare resnet20 resnet56', '--compare \"model=vgg lr=0.1\" 3'")
    parser.add_argument("--all", action="store_true", dest="everything",
                        help="also the failed and interrupted runs, listed with their status "
                             "and error (left out by default)")
    parser.add_argument("--no-figures", action="store_true",
                        help="tables only (skips reading the TensorBoard event files)")
    args = parser.parse_args(argv)
    out = report(args.paths, args.out, args.metrics, not args.no_figures,
                 argv if argv is not None else sys.argv[1:], args.tags, args.baseline,
                 args.everything, args.compare)
    from rich.text import Text

    from resnet_exp.core.console import console

    console.print(Text(f"report: {out / 'report.md'}"), soft_wrap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
