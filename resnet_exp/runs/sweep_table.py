"""The table a sweep prints once its jobs have returned (runs/hydra_hooks.py, SweepSummary): per
job its number, status, swept values, `<monitor>_best` and test/acc, the best job in bold; then
the folders of the best job and of each job that did not finish, each path whole on a line of
its own, with the first line of the job's error.

It never cuts a name or a number: the columns are fitted first, as the report's are
(report_console.py): test/acc is left out, and said so, where it does not fit; a swept value too
long for any width folds onto the next line. A job's folder name holds its overrides (729
characters seen), so the table names a job by the number its folder starts with. Piped to a log,
the table is at most PIPED_WIDTH characters wide.
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from resnet_exp.core.config import better, short_value
from resnet_exp.runs import read
from resnet_exp.runs.compare import Run, differing_keys, read_run
from resnet_exp.runs.report_console import Column, fitted, print_paths
from resnet_exp.runs.report_rows import first_line

STATUS_STYLE = {"finished": "green", "pruned": "magenta", "failed": "red", "interrupted": "yellow",
                "running": "cyan"}
# a piped sweep (a SLURM log, `| tee`) has no width to fit; wider lines are unreadable in a
# pager or an editor without wrapping
PIPED_WIDTH = 200


def _value(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _number(job: Run, sweep_dir: Path, index: int) -> str:
    """The number a job's folder starts with (`3_model=resnet20,seed=1`: Hydra's job number, an
    Optuna trial's), else its place in the table."""
    head = job.path.relative_to(sweep_dir).parts[0].split("_")[0]
    return head if head.isdigit() else str(index)


class Sweep:
    """A sweep's jobs as its folder holds them, with the columns of its table."""

    def __init__(self, sweep_dir: Path, monitor: str, mode: str = "max") -> None:
        self.dir = Path(sweep_dir)
        self.jobs = [read_run(job) for job in (read.find_runs(self.dir) if self.dir.is_dir()
                                                else [])]
        self.numbers = [_number(job, self.dir, i) for i, job in enumerate(self.jobs)]
        self.objective = f"{monitor}_best"
        self.scores = [_value(job.metrics, self.objective) for job in self.jobs]
        self.best = better(mode)((i for i, s in enumerate(self.scores) if s is not None),
                                 key=self.scores.__getitem__, default=None)

    def columns(self) -> list[Column]:
        """Job number, status, the swept values and the objective always; test/acc where it
        fits (`fitted`)."""
        settings = [{"seed": str(job.seed), **job.settings} for job in self.jobs]
        keys = differing_keys(settings)
        tests = [_value(job.metrics, "test/acc") for job in self.jobs]
        return [Column("job", self.numbers, justify="right"),
                Column("status", [job.status for job in self.jobs]),
                *(Column(key, [short_value(s.get(key, "")) for s in settings]) for key in keys),
                Column(self.objective, [_score(s) for s in self.scores], justify="right"),
                Column("test/acc", [_score(t) for t in tests], 1.0, "right")]

    def table(self, width: int) -> tuple[Table, list[Column]]:
        """The table at `width`, and the columns left out to fit it."""
        from resnet_exp.core.console import add_row, literal

        shown, left_out = fitted(self.columns(), width)
        table = Table(header_style="bold")
        for column in shown:  # fold, never "…": a value too long for any width still shows whole
            table.add_column(literal(column.name), justify=column.justify, overflow="fold")
        for i, job in enumerate(self.jobs):
            cells = [Text(job.status, style=STATUS_STYLE.get(job.status, "red"))
                     if column.name == "status" else column.cells[i] for column in shown]
            add_row(table, *cells, style="bold" if i == self.best else None)
        return table, left_out

    def folders(self) -> list[tuple[str, Path]]:
        """The best job's folder, then each unfinished job's, with what it is."""
        items = []
        if self.best is not None:
            items.append((f"best: job {self.numbers[self.best]}, {self.objective} "
                          f"{_score(self.scores[self.best])}", self.jobs[self.best].path))
        for number, job in zip(self.numbers, self.jobs, strict=True):
            if job.status != "finished":
                why = first_line(job.error)
                items.append((f"job {number} {job.status}{': ' + why if why else ''}", job.path))
        return items


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def sweep_table(sweep_dir: Path, monitor: str, mode: str = "max",
                width: int = PIPED_WIDTH) -> Table:
    """The jobs' table at `width` (the best by `<monitor>_best`, lowest for `mode` min, bold)."""
    return Sweep(sweep_dir, monitor, mode).table(width)[0]


def print_sweep(console: Console, sweep_dir: Path, monitor: str, mode: str = "max") -> None:
    """The sweep's folder, its table fitted to the terminal (piped: to PIPED_WIDTH), the columns
    left out, and the folders to look into."""
    sweep = Sweep(sweep_dir, monitor, mode)
    width = console.width if console.is_terminal else min(console.width, PIPED_WIDTH)
    console.print(Text(f"{len(sweep.jobs)} jobs in {sweep.dir}"), soft_wrap=True)
    table, left_out = sweep.table(width)
    console.print(table, width=width)
    if left_out:
        console.print(Text(f"left out to fit {width} columns: "
                           f"{', '.join(c.name for c in left_out)} (in each job's metrics.json)"),
                      soft_wrap=True)
    if sweep.folders():
        print_paths(console, "Folders", sweep.folders())
