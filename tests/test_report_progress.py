"""`python -m resnet_exp.report` says what it is doing while it reads runs and draws figures:
on a terminal a bar naming the run or figure at hand, piped one line per part done (as the
analyses do), each line naming what it read or drew."""

from __future__ import annotations

import io
import re

from rich.console import Console

from resnet_exp import report


def test_a_piped_report_prints_a_line_per_part(smoke_sweep, tmp_path):
    buffer = io.StringIO()
    out = report.report([str(smoke_sweep)], tmp_path / "r", console=Console(file=buffer,
                                                                          width=100))
    lines = buffer.getvalue().splitlines()
    progress = [line for line in lines if re.fullmatch(r"report: .+ in \d+\.\d s", line)]
    assert progress[0].startswith("report: read 4 runs in "), progress
    drawn = [name for line in progress[1:]
             for name in line.removeprefix("report: ").rsplit(" in ", 1)[0].split(", ")]
    assert "curves.png" in drawn and "sweep_model.residual.png" in drawn, progress
    assert all((out / name).is_file() for name in drawn), drawn
    # the runs are read before the table prints; the figures are drawn after it
    assert lines.index(progress[0]) < min(i for i, line in enumerate(lines) if "┃" in line)
    assert "\x1b" not in buffer.getvalue()  # no bar's frames in a file


def test_on_a_terminal_a_bar_names_the_run_and_the_figure_at_hand(smoke_sweep, tmp_path):
    buffer = io.StringIO()
    terminal = Console(file=buffer, width=100, force_terminal=True, color_system=None)
    report.report([str(smoke_sweep)], tmp_path / "r", console=terminal)
    shown = buffer.getvalue()
    jobs = sorted(p.name for p in smoke_sweep.iterdir() if (p / "run.json").is_file())
    assert all(f"reading runs: {job}" in shown for job in jobs), shown[:2000]
    assert "drawing curves" in shown and "drawing sweep figures" in shown
