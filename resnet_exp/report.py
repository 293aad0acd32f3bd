"""`python -m resnet_exp.report PATH... [--out DIR] [--metric NAME ...] [--no-figures]`

Compares runs the way a paper's table and figures do. PATHs are run folders, sweep folders, or
any folder holding them (e.g. `outputs/`), and globs. Runs are grouped into configurations by
the values of the keys their overrides set, `seed` left out: one row per configuration with its
metrics as mean +- std over the seeds of its finished runs, and n. Runs that did not finish
(running, failed, interrupted) are counted and listed apart, never averaged in.

Writes report.md, report.csv (one row per configuration), runs.csv (one row per run) and the
figures into its own folder (default outputs/reports/<date>_<time>/): training and validation
curves overlaid, each swept parameter against the first metric with error bars, gradient flow of
each configuration side by side, and for transfer-learning runs (`model.mode`) bars of accuracy,
trainable parameters and epochs to the best epoch.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from resnet_exp import runs
from resnet_exp.errors import UserError, command
from resnet_exp.runs import read
from resnet_exp.runs.compare import Configuration, curve_panels, group, read_run, sweep_lines

DEFAULT_METRICS = ("test/acc", "test_last/acc", "val/acc_best", "best_epoch", "params/trainable",
                   "time/total_s")
TRANSFER_MODES = ("scratch", "feature_extract", "finetune")


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


# -- figures ----------------------------------------------------------------------------------

def draw(configs: list[Configuration], metric: str, out: Path) -> list[tuple[str, str]]:
    """Every figure the runs allow; returns (title, file name) pairs."""
    if not any(c.finished for c in configs):
        return []
    return [*_curves(configs, out), *_sweeps(configs, metric, out),
            *_gradient_flows(configs, out), *_transfer(configs, metric, out)]


def _curves(configs: list[Configuration], out: Path) -> list[tuple[str, str]]:
    from resnet_exp import figures

    panels = curve_panels(configs)
    if not panels:
        return []
    figures.save(figures.curves(panels), out / "curves.png")
    return [("Training and validation curves (mean ± std over seeds)", "curves.png")]


def _sweeps(configs: list[Configuration], metric: str, out: Path) -> list[tuple[str, str]]:
    """One figure per swept key that takes more than one value: `metric` against it."""
    from resnet_exp import figures

    drawn = []
    for key in configs[0].values:
        lines, numeric, ticks = sweep_lines(configs, key, metric)
        xs = {x for xs_of_line, _, _ in lines.values() for x in xs_of_line}
        if len(xs) < 2:
            continue
        name = "sweep_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", key) + ".png"
        figures.save(figures.sweep(key, metric, lines, numeric, ticks), out / name)
        drawn.append((f"{metric} vs {key} (error bars: ± 1 std over seeds)", name))
    return drawn


def _gradient_flows(configs: list[Configuration], out: Path) -> list[tuple[str, str]]:
    """Each configuration's first finished run with a gradient_flow.csv, side by side."""
    from resnet_exp import figures

    flows = {}
    for configuration in configs:
        with_flow = [r for r in configuration.finished
                     if (r.path / runs.GRADIENT_FLOW_FILE).is_file()]
        if with_flow:
            run = with_flow[0]
            title = f"{configuration.label} (seed {run.seed})"
            flows[title] = read.read_gradient_flow(run.path / runs.GRADIENT_FLOW_FILE)
    if not flows:
        return []
    figures.save(figures.gradient_flows(flows), out / "gradient_flow.png")
    return [("Gradient flow, one line per epoch", "gradient_flow.png")]


def _is_transfer(run) -> bool:
    model = run.config.get("model")
    return isinstance(model, dict) and str(model.get("mode")) in TRANSFER_MODES


def _transfer(configs: list[Configuration], metric: str, out: Path) -> list[tuple[str, str]]:
    """Transfer-learning runs (`model.mode`): accuracy, trainable parameters, epochs to best."""
    from resnet_exp import figures

    if not any(_is_transfer(r) for c in configs for r in c.finished):
        return []
    shown = [c for c in configs if c.stats(metric)]
    titles = {metric: metric, "params/trainable": "params/trainable",
              "best_epoch": "epochs to best"}
    panels = {}
    for key, title in titles.items():
        shift = 1 if key == "best_epoch" else 0  # best_epoch counts from 0
        means, stds = [], []
        for configuration in shown:
            stats = configuration.stats(key)
            means.append(stats[0] + shift if stats else 0.0)
            stds.append((stats[1] or 0.0) if stats else 0.0)
        panels[title] = ([c.label for c in shown], means, stds)
    figures.save(figures.bars(panels, "Transfer learning"), out / "transfer.png")
    return [("Transfer learning: accuracy, trainable parameters, epochs to best", "transfer.png")]


# -- tables: the console, report.md and report.csv show the same rows --------------------------

@dataclass
class Row:
    """One configuration as every table shows it."""

    label: list[str]  # the differing keys' values, or ["all runs"]
    n: int  # finished runs
    stats: list[tuple[float, float | None, int] | None]  # per metric: mean, std, count
    not_averaged: str

    def cells(self) -> list[str]:
        return [*self.label, str(self.n), *(cell(s) for s in self.stats), self.not_averaged]


def table_rows(configs: list[Configuration], metrics: list[str]) -> tuple[list[str], list[Row]]:
    """The label columns (the differing keys) and one row per configuration."""
    keys = list(configs[0].values) or ["configuration"]
    return keys, [Row(list(c.values.values()) or ["all runs"], len(c.finished),
                      [c.stats(m) for m in metrics], c.not_averaged()) for c in configs]


def left_out(configs: list[Configuration]) -> list[tuple[Configuration, object]]:
    return [(c, r) for c in configs for r in c.runs if not r.done]


def write_outputs(out: Path, configs, common, metrics, drawn, argv) -> None:
    keys, rows = table_rows(configs, metrics)
    with open(out / "report.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*keys, "n", "not averaged",
                         *(f"{m} {s}" for m in metrics for s in ("mean", "std"))])
        for row in rows:
            means_stds = [v for s in row.stats for v in ((s[0], s[1]) if s else ("", ""))]
            writer.writerow([*row.label, row.n, row.not_averaged, *means_stds])
    with open(out / "runs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "status", "seed", *keys, *metrics])
        for c in configs:
            for r in c.runs:
                writer.writerow([r.path, r.status, r.seed, *c.values.values(),
                                 *(r.metrics.get(m, "") for m in metrics)])
    header = [*keys, "n", *metrics, "not averaged"]
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


def print_table(configs, common, metrics) -> None:
    from rich.table import Table

    from resnet_exp.console import console

    keys, rows = table_rows(configs, metrics)
    table = Table(title=f"{counted(configs)} (mean ± std over seeds)", header_style="bold",
                  caption=" ".join(f"{k}={v}" for k, v in common.items()) or None)
    for key in keys:  # the configuration's values are never cut: resnet20 vs resnet32
        table.add_column(key, no_wrap=True, min_width=len(key))
    for name in ("n", *metrics):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("not averaged", style="yellow")
    for row in rows:
        table.add_row(*row.cells())
    console.print(table)
    if left_out(configs):
        rest = Table(title="Runs not averaged", header_style="bold")
        for column in ("run", "status", "configuration", "error"):
            rest.add_column(column, overflow="fold")
        for c, r in left_out(configs):
            rest.add_row(str(r.path), r.status, c.label, (r.error or "")[:200])
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
           tags: list[str] | None = None) -> Path:
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
    print_table(configs, common, metrics)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        drawn = draw(configs, metrics[0], staging) if figures else []
        write_outputs(staging, configs, common, metrics, drawn, argv or patterns)
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
    parser.add_argument("--no-figures", action="store_true",
                        help="tables only (skips reading the TensorBoard event files)")
    args = parser.parse_args(argv)
    out = report(args.paths, args.out, args.metrics, not args.no_figures,
                 argv if argv is not None else sys.argv[1:], args.tags)
    from resnet_exp.console import console

    console.print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
