"""The report's rows (`python -m resnet_exp.report`, resnet_exp/report.py): one per
configuration, its metrics as mean ± std over seeds with the 95% confidence interval of the mean,
and with `--baseline` each mean's difference to its baseline row. The console, report.md,
report.tex and report.csv all show these rows (report_console.py, report_files.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from resnet_exp.core.errors import UserError
from resnet_exp.runs.compare import Configuration
from resnet_exp.runs.stats import ci95


def fmt(x: float, digits: int = 4, thousands: str = ",") -> str:
    return f"{x:,.0f}".replace(",", thousands) if abs(x) >= 1000 else f"{x:.{digits}g}"


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


def interval(stats) -> str:
    """The 95% confidence interval of the mean, `[low, high]`; "" below two seeds and where
    every seed gave the same value (the interval is that value). No thousands separator: in
    `[56,170, 56,170]` the commas would be read as the bounds' separator."""
    bounds = ci95(stats)
    if bounds is None or not stats[1]:
        return ""
    return f"[{fmt(bounds[0], thousands='')}, {fmt(bounds[1], thousands='')}]"


@dataclass
class Row:
    """One configuration as every table shows it."""

    label: list[str]  # the differing keys' values, or ["all runs"]
    n: int  # finished runs
    stats: list[tuple[float, float | None, int] | None]  # per metric: mean, std, count
    not_averaged: str
    deltas: list[float | None] | None = None  # per metric: mean - the baseline row's mean

    def metric_cells(self, between: str = " ") -> list[str]:
        """Per metric: mean ± std, then (after `between`) its confidence interval."""
        return [between.join(filter(None, (cell(s), interval(s)))) for s in self.stats]

    def delta_cells(self) -> list[str]:
        return [] if self.deltas is None else ["-" if d is None else f"{d:+.4g}"
                                               for d in self.deltas]

    def cells(self) -> list[str]:
        return [*self.label, str(self.n), *self.metric_cells(), *self.delta_cells(),
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


def first_line(error: str | None) -> str:
    return error.splitlines()[0][:200] if error else ""


