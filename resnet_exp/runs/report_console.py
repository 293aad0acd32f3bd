"""The report's console output (`python -m resnet_exp.report`, resnet_exp/report.py): its table
fitted to the console without cutting a name or a number, its notes, and the runs it did not
average with each path on a line of its own.

Rich fits a table that is too wide by narrowing every column, cutting cells (`resne…`,
`0.9653 ± 0.0…`) and at 100 columns blanking the `n` header. Here the columns are chosen first:
those that must show (the configuration's values, its row number, n, the first metric) always,
the others in order of importance while the table still fits the console at their full width;
one line names the columns left out. Piped (console.py: as wide as the cells) every column fits.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from resnet_exp.core.console import add_row, literal
from resnet_exp.runs.report_rows import counted, delta_names, first_line, left_out

MUST = 0.0  # the priority of a column that is always shown


@dataclass
class Column:
    name: str
    cells: list[str]  # a cell may hold lines: mean ± std above its confidence interval
    priority: float = MUST  # the lower, the sooner it is added while the table fits
    justify: str = "left"
    style: str | None = None

    @property
    def width(self) -> int:
        """Every cell line whole; a header can wrap at its spaces (`test/acc - baseline`)."""
        words = [cell_len(w) for w in self.name.split()] or [1]
        lines = [cell_len(line) for cell in self.cells for line in cell.splitlines()]
        return max(max(words), *lines, 1)


def table_width(columns: list[Column]) -> int:
    # rich's heavy-head box: one space of padding either side of a cell, a rule between cells
    # and at both edges
    return sum(c.width for c in columns) + 3 * len(columns) + 1


def fitted(columns: list[Column], width: int) -> tuple[list[Column], list[Column]]:
    """The columns shown at `width`, in their own order, and those left out. The must-show
    columns are never left out: at a width they alone exceed, rich folds their cells, splitting
    a value over lines rather than cutting it."""
    shown = [c for c in columns if c.priority == MUST]
    for column in sorted((c for c in columns if c.priority != MUST), key=lambda c: c.priority):
        if table_width([*shown, column]) <= width:
            shown.append(column)
    chosen = {id(c) for c in shown}
    return ([c for c in columns if id(c) in chosen],
            [c for c in columns if id(c) not in chosen])


def print_table(console: Console, title: str, columns: list[Column], common: dict) -> None:
    """The table, then the settings every run shares and the columns that did not fit, each on
    lines of their own that the terminal wraps (soft_wrap: a copied value stays one piece)."""
    shown, left_out = fitted(columns, console.width)
    table = Table(title=literal(title), header_style="bold")
    for column in shown:  # fold, never "…": a value too long for any width still shows whole
        table.add_column(literal(column.name), justify=column.justify, style=column.style,
                         overflow="fold")
    for i in range(len(columns[0].cells)):
        add_row(table, *(c.cells[i] for c in shown))
    console.print(table)
    if common:
        console.print(Text("same in every run: " + " ".join(f"{k}={v}" for k, v in common.items())),
                      soft_wrap=True)
    if left_out:
        console.print(Text(f"left out to fit {console.width} columns: "
                           f"{', '.join(c.name for c in left_out)} (report.md and report.csv "
                           "have every column)"), soft_wrap=True)


def print_paths(console: Console, title: str, items: list[tuple[str, object]]) -> None:
    """`title`, then per item a line of what it is and the path on the next line, never in a
    table cell: a cell cut or folded a path that a user copies."""
    console.print(Text(title, style="bold"))
    for what, path in items:
        console.print(Text(f"  {what}"), soft_wrap=True)
        console.print(Text(f"    {path}"), soft_wrap=True, highlight=False)


def columns(built, metrics: list[str], baseline: str | None) -> list[Column]:
    """The console's columns, each with its priority (`fitted`): the row number,
    the configuration's values, n and the first metric always; then the first metric's
    difference to the baseline, the runs not averaged, the other metrics, each with its
    difference."""
    keys, rows = built
    found = [Column("#", [str(i) for i in range(1, len(rows) + 1)], justify="right")]
    found += [Column(key, [row.label[i] for row in rows]) for i, key in enumerate(keys)]
    found.append(Column("n", [str(row.n) for row in rows], justify="right"))
    cells = [row.metric_cells("\n") for row in rows]
    deltas = [row.delta_cells() for row in rows]
    for i, (metric, delta) in enumerate(zip(metrics, delta_names(metrics, baseline) or
                                            [None] * len(metrics), strict=True)):
        found.append(Column(metric, [c[i] for c in cells], 2.0 * i, "right"))
        if delta:
            found.append(Column(delta, [d[i] for d in deltas], 2.0 * i + 1, "right"))
    if any(row.not_averaged for row in rows):  # an empty column would only take width
        found.append(Column("not averaged", [row.not_averaged for row in rows], 1.5,
                            style="yellow"))
    return found


def print_report(console: Console, configs, common, metrics, built, baseline, notes) -> None:
    title = f"{counted(configs)} (mean ± std over seeds, 95% CI below)"
    print_table(console, title, columns(built, metrics, baseline), common)
    for note in notes:
        console.print(Text(note), soft_wrap=True)
    if left_out(configs):
        print_paths(console, "Runs not averaged", [
            (" · ".join(filter(None, (r.status, c.label, first_line(r.error)))), r.path)
            for c, r in left_out(configs)])
