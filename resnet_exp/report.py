"""`python -m resnet_exp.report PATH... [--out DIR] [--metric NAME ...] [--baseline KEY=VALUE]
[--no-figures]`

Compares runs the way a paper's table and figures do. PATHs are run folders, sweep folders, or
any folder holding them (e.g. `outputs/`), and globs. Runs are grouped into configurations by
the values of the keys their overrides set, `seed` left out: one row per configuration with its
metrics as mean +- std over the seeds of its finished runs, and n. Runs that did not finish
(running, pruned, failed, interrupted) are counted and listed apart, never averaged in.
`--baseline trick=baseline` makes it an ablation table: each row also gets, per metric, the
difference of its mean to the mean of the row that has trick=baseline and the same other values.

Writes report.md, report.csv (one row per configuration), runs.csv (one row per run) and the
figures into its own folder (default outputs/reports/<date>_<time>/; the figures:
resnet_exp/runs/report_figures.py).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from resnet_exp.console import command
from resnet_exp.errors import UserError
from resnet_exp.runs import read
from resnet_exp.runs.compare import Configuration, group, read_run
from resnet_exp.runs.report_figures import draw

DEFAULT_METRICS = ("test/acc", "test_last/acc", "val/acc_best", "best_epoch", "params/trainable",
                   "time/total_s")


def fmt(x: float, digits: int = 4) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}g}"


def counted(configs: list[Configuration]) -> str:
    n = sum(len(c.runs) for c in configs)
    return (f"{n} run{'s' * (n != 1)}, "
            f"{len(configs)} configuration{'s' * (len(configs) != 1)}")


def cell(stats) -> str:
    """mean ± std, the std to 2 significant digits: more would be noise with a few seeds."""
    if stats is None:
        return "-"
    mean, std, _ = stats
    return fmt(mean) if std is None else f"{fmt(mean)} ± {fmt(std, 2)}"


# -- tables: the console, report.md and report.csv show the same rows --------------------------

@dataclass
class Row:
    """One configuration as every table shows it."""

    label: list[str]  # the differing keys' values, or ["all runs"]
    n: int  # finished runs
    stats: list[tuple[float, float | None, int] | None]  # per metric: mean, std, count
    not_averaged: str
    deltas: list[float | None] | None = None  # per metric: mean - the baseline row's mean

    def cells(self) -> list[str]:
        deltas = [] if self.deltas is None else ["-" if d is None else f"{d:+.4g}"
                                                 for d in self.deltas]
        return [*self.label, str(self.n), *(cell(s) for s in self.stats), *deltas,
                self.not_averaged]


def baseline_of(configs: list[Configuration], baseline: str) -> dict[int, Configuration]:
    """For each configuration (by position), the one with KEY=VALUE (`baseline`) and the same
    other values: what an ablation row is compared with."""
    key, _, value = baseline.partition("=")
    keys = list(configs[0].values)
    if key not in keys:
        raise UserError(f"--baseline {baseline}: {key} is not a setting the runs differ in "
                        f"({', '.join(keys) or 'they differ in none'})")
    if value not in {c.values[key] for c in configs}:
        raise UserError(f"--baseline {baseline}: no run has {key}={value}; its values are "
                        f"{', '.join(dict.fromkeys(c.values[key] for c in configs))}")
    rest = [k for k in keys if k != key]
    found = {tuple(c.values[k] for k in rest): c for c in configs if c.values[key] == value}
    return {i: found[tuple(c.values[k] for k in rest)] for i, c in enumerate(configs)
            if tuple(c.values[k] for k in rest) in found}


def table_rows(configs: list[Configuration], metrics: list[str],
               baseline: str | None = None) -> tuple[list[str], list[Row]]:
    """The label columns (the differing keys) and one row per configuration; with `baseline`,
    each row's difference to its baseline row."""
    keys = list(configs[0].values) or ["configuration"]
    rows = [Row(list(c.values.values()) or ["all runs"], len(c.finished),
                [c.stats(m) for m in metrics], c.not_averaged()) for c in configs]
    if baseline:
        base = baseline_of(configs, baseline)
        for i, row in enumerate(rows):
            theirs = [base[i].stats(m) if i in base else None for m in metrics]
            row.deltas = [mine[0] - ref[0] if mine and ref else None
                          for mine, ref in zip(row.stats, theirs, strict=True)]
    return keys, rows


def delta_names(metrics: list[str], baseline: str | None) -> list[str]:
    return [f"{m} - baseline" for m in metrics] if baseline else []


def left_out(configs: list[Configuration]) -> list[tuple[Configuration, object]]:
    return [(c, r) for c in configs for r in c.runs if not r.done]


def write_outputs(out: Path, configs, common, metrics, built, drawn, argv,
                  baseline=None) -> None:
    """report.md, report.csv and runs.csv; `built` is table_rows' (keys, rows)."""
    keys, rows = built
    with open(out / "report.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*keys, "n", "not averaged",
                         *(f"{m} {s}" for m in metrics for s in ("mean", "std")),
                         *delta_names(metrics, baseline)])
        for row in rows:
            means_stds = [v for s in row.stats for v in ((s[0], s[1]) if s else ("", ""))]
            deltas = ["" if d is None else d for d in row.deltas or []]
            writer.writerow([*row.label, row.n, row.not_averaged, *means_stds, *deltas])
    with open(out / "runs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "status", "seed", *keys, *metrics])
        for c in configs:
            for r in c.runs:
                writer.writerow([r.path, r.status, r.seed, *c.values.values(),
                                 *(r.metrics.get(m, "") for m in metrics)])
    header = [*keys, "n", *metrics, *delta_names(metrics, baseline), "not averaged"]
    lines = [f"# Report: {counted(configs)}", "",
             f"`python -m resnet_exp.report {' '.join(argv)}`, {datetime.now():%Y-%m-%d %H:%M}",
             "", "Mean ± std over the seeds of the finished runs; n finished runs."]
    if common:
        lines += ["", "Same in every run: " + " ".join(f"`{k}={v}`" for k, v in common.items())]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    if left_out(configs):
        lines += ["", "## Runs not averaged", "", "| run | status | configuration | error |",
                  "|---|---|---|---|"]
        for c, r in left_out(configs):
            error = r.error.splitlines()[0][:120] if r.error else ""
            lines.append(f"| {r.path} | {r.status} | {c.label} | {error} |")
    for title, name in drawn:
        lines += ["", f"## {title}", "", f"![{title}]({name})"]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def print_table(configs, common, metrics, built, baseline=None) -> None:
    from rich.table import Table

    from resnet_exp.console import add_row, console, literal

    keys, rows = built
    table = Table(title=f"{counted(configs)} (mean ± std over seeds)", header_style="bold",
                  caption=literal(" ".join(f"{k}={v}" for k, v in common.items())) or None)
    for key in keys:  # the configuration's values are never cut: resnet20 vs resnet32
        table.add_column(literal(key), no_wrap=True, min_width=len(key))
    for name in ("n", *metrics, *delta_names(metrics, baseline)):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("not averaged", style="yellow")
    for row in rows:  # values as the overrides gave them: logger=[tensorboard,mlflow]
        add_row(table, *row.cells())
    console.print(table)
    if left_out(configs):
        rest = Table(title="Runs not averaged", header_style="bold")
        for column in ("run", "status", "configuration", "error"):
            rest.add_column(column, overflow="fold")
        for c, r in left_out(configs):
            add_row(rest, r.path, r.status, c.label, (r.error or "")[:200])
        console.print(rest)


def with_tags(runs: list, tags: list[str]) -> list:
    """The runs whose `tags=[...]` hold every one of `tags`."""
    kept = [r for r in runs if set(tags) <= set(map(str, r.config.get("tags") or []))]
    if not kept:
        seen = sorted({str(t) for r in runs for t in r.config.get("tags") or []})
        raise UserError(f"--tag {' --tag '.join(tags)}: no run has "
                        f"{'them' if len(tags) > 1 else 'it'}; the runs' tags are "
                        f"{', '.join(seen) or '(none)'}")
    return kept


def report(patterns: list[str], out: Path | None = None, metrics: list[str] | None = None,
           figures: bool = True, argv: list[str] | None = None,
           tags: list[str] | None = None, baseline: str | None = None) -> Path:
    """Table, files and figures of the runs under `patterns` (those with every tag in `tags`),
    into `out`. The folder appears only once everything in it is written: a failed report
    leaves none behind."""
    all_runs = [read_run(p) for p in read.collect(patterns)]
    if tags:
        all_runs = with_tags(all_runs, tags)
    configs, common = group(all_runs)
    present = {k for r in all_runs for k in r.metrics}
    if metrics:
        unknown = [m for m in metrics if m not in present]
        if unknown and any(r.done for r in all_runs):
            raise UserError(f"--metric {' '.join(unknown)}: no run has it; the runs' metrics are "
                            f"{', '.join(sorted(k for k in present if '/' in k))}")
    else:
        metrics = [m for m in DEFAULT_METRICS if m in present] or list(DEFAULT_METRICS[:1])
    out = Path(out or Path("outputs") / "reports" / f"{datetime.now():%Y-%m-%d_%H-%M-%S}")
    built = table_rows(configs, metrics, baseline)  # the console's rows, and the files'
    print_table(configs, common, metrics, built, baseline)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    except OSError as e:
        raise UserError(f"--out {out}: cannot write there ({e.strerror or e}): give a folder "
                        "that can be written, or leave --out to its default") from None
    try:
        drawn = draw(configs, metrics[0], staging) if figures else []
        write_outputs(staging, configs, common, metrics, built, drawn, argv or patterns,
                      baseline)
        if out.exists():  # --out given again: the new report replaces the old one's files
            for old in staging.iterdir():
                os.replace(old, out / old.name)
            staging.rmdir()
        else:
            os.replace(staging, out)
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
                             f"(default: {', '.join(DEFAULT_METRICS)})")
    parser.add_argument("--tag", action="append", dest="tags", metavar="TAG",
                        help="only the runs started with this tag (tags=[...]), repeatable")
    parser.add_argument("--baseline", metavar="KEY=VALUE",
                        help="an ablation: each row's difference to the row with KEY=VALUE and "
                             "the same other settings (e.g. trick=baseline)")
    parser.add_argument("--no-figures", action="store_true",
                        help="tables only (skips reading the TensorBoard event files)")
    args = parser.parse_args(argv)
    out = report(args.paths, args.out, args.metrics, not args.no_figures,
                 argv if argv is not None else sys.argv[1:], args.tags, args.baseline)
    from resnet_exp.console import console, literal

    console.print(f"report: {literal(out / 'report.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
