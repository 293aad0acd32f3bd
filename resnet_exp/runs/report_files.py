"""The report's files (`python -m resnet_exp.report`, resnet_exp/report.py): report.md (the
table, the notes, the runs not averaged, the figures), report.tex (the table for a paper,
report_latex.py), report.csv (one row per configuration) and runs.csv (one row per run).
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

from resnet_exp.runs import report_latex
from resnet_exp.runs.report_rows import (
    cell,
    counted,
    delta_names,
    first_line,
    interval,
    left_out,
)
from resnet_exp.runs.stats import ci95


def write_csvs(out: Path, configs, metrics, built, baseline) -> None:
    keys, rows = built
    with open(out / "report.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*keys, "n", "not averaged",
                         *(f"{m} {s}" for m in metrics
                           for s in ("mean", "std", "ci95 low", "ci95 high")),
                         *delta_names(metrics, baseline)])
        for row in rows:
            values = [v for s in row.stats
                      for v in ((s[0], s[1], *(ci95(s) or ("", ""))) if s else ("",) * 4)]
            deltas = ["" if d is None else d for d in row.deltas or []]
            writer.writerow([*row.label, row.n, row.not_averaged,
                             *("" if v is None else v for v in values), *deltas])
    with open(out / "runs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "status", "seed", *keys, *metrics])
        for c in configs:
            for r in c.runs:
                writer.writerow([r.path, r.status, r.seed, *c.values.values(),
                                 *(r.metrics.get(m, "") for m in metrics)])


def write_latex(out: Path, configs, common, metrics, built, baseline, argv) -> None:
    keys, rows = built
    header = [*keys, "n", *metrics, *delta_names(metrics, baseline)]
    body = [[*map(report_latex.escape, row.label), str(row.n),
             *(report_latex.stat_cell(cell(s), interval(s)) for s in row.stats),
             *map(report_latex.number, row.delta_cells())] for row in rows]
    caption = (r"Mean $\pm$ std over the seeds of each configuration's finished runs ($n$), "
               r"95\% confidence interval of the mean (Student $t$) in brackets.")
    comments = [f"python -m resnet_exp.report {' '.join(argv)}: {counted(configs)}",
                *([f"same in every run: {' '.join(f'{k}={v}' for k, v in common.items())}"]
                  if common else [])]
    text = report_latex.table(header, body, len(keys), caption,
                              [c.replace("\n", " ") for c in comments])
    (out / "report.tex").write_text(text)


def write_markdown(out: Path, configs, common, metrics, built, drawn, argv, baseline,
                   notes: list[str]) -> None:
    keys, rows = built
    header = ["#", *keys, "n", *metrics, *delta_names(metrics, baseline), "not averaged"]
    lines = [f"# Report: {counted(configs)}", "",
             f"`python -m resnet_exp.report {' '.join(argv)}`, {datetime.now():%Y-%m-%d %H:%M}",
             "", "Mean ± std over the seeds of the finished runs, [95% confidence interval of "
             "the mean] (Student t, n - 1 degrees of freedom); n finished runs. The same table "
             "for LaTeX: report.tex."]
    if common:
        lines += ["", "Same in every run: " + " ".join(f"`{k}={v}`" for k, v in common.items())]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [f"| {i} | " + " | ".join(row.cells()) + " |" for i, row in enumerate(rows, 1)]
    lines += [line for note in notes for line in ("", note)]
    if left_out(configs):
        lines += ["", "## Runs not averaged", "", "| run | status | configuration | error |",
                  "|---|---|---|---|"]
        lines += [f"| {r.path} | {r.status} | {c.label} | {first_line(r.error)} |"
                  for c, r in left_out(configs)]
    for title, name in drawn:
        vector = " ".join(f"[{name.rsplit('.', 1)[0]}.{k}]({name.rsplit('.', 1)[0]}.{k})"
                          for k in ("pdf", "svg"))
        lines += ["", f"## {title}", "", f"![{title}]({name})", "", f"Vector: {vector}"]
    (out / "report.md").write_text("\n".join(lines) + "\n")


