"""`python -m resnet_exp.report` on the console: at widths 60, 80, 100 and 200 and
piped, no name or number is cut: each cell shows whole (wrapped or folded where it must) or its
column is left out and named in one line; the `n` header shows; paths print on lines of their
own. Checked cell by cell against report.md, which holds every column unfitted."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import run_cli
from omegaconf import OmegaConf
from rich.console import Console
from test_report import fake_run
from test_report_paper import with_failures

from resnet_exp import report


@pytest.fixture(scope="module")
def sweep(smoke_sweep, tmp_path_factory) -> Path:
    return with_failures(smoke_sweep, tmp_path_factory.mktemp("console") / "sweep")


def cells(lines: list[str], bar: str) -> list[list[str]]:
    """The rows of a rich table, each cell's lines joined without spaces (a folded or wrapped
    cell whole again); a body row starts where its first cell (#) is not blank, the header's
    lines (bar ┃) are one row."""
    rows: list[list[str]] = []
    for line in lines:
        parts = [p.strip() for p in line.split(bar)[1:-1]]
        if parts and (not rows or parts[0] and bar == "│"):
            rows.append(parts)
        elif parts:
            rows[-1] = [a + b for a, b in zip(rows[-1], parts, strict=True)]
    return [[c.replace(" ", "") for c in row] for row in rows]


def md_table(md: str) -> list[dict[str, str]]:
    """report.md's main table, each cell without spaces (as `cells` gives the console's)."""
    lines = md.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("| # |"))
    table = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        table.append([c.strip().replace(" ", "") for c in line.strip()[1:-1].split("|")])
    return [dict(zip(table[0], row, strict=True)) for row in table[2:]]


def check_console(text: str, width: int | None, md: str, metrics: list[str]) -> None:
    """Every cell of the console's table whole, as report.md has it; each metric shown or named
    in the line of columns left out; the table within `width`."""
    assert "…" not in text
    lines = text.splitlines()
    if width:
        assert max(len(line) for line in lines if line[:1] in "┏┃┡│└") <= width
    (header,) = cells([line for line in lines if line.startswith("┃")], "┃")
    assert header[:1] == ["#"] and "n" in header
    shown, full = cells([line for line in lines if line.startswith("│")], "│"), md_table(md)
    assert len(shown) == len(full)
    for row, reference in zip(shown, full, strict=True):
        assert dict(zip(header, row, strict=True)) == {k: reference[k] for k in header}
    if "Runs not averaged" in lines:  # each run's status line, then its path on a line alone
        paths = lines[lines.index("Runs not averaged") + 2::2]
        assert paths and all(Path(path.strip()).is_dir() for path in paths), paths
    left = next((line for line in lines if line.startswith("left out to fit")), "")
    for metric in metrics:
        assert metric in header or metric in left, (metric, left)


def long_label_runs(folder: Path, config: dict) -> None:
    """Three swept keys with long values: their columns alone are wider than 60."""
    for i, (model, logger) in enumerate([("resnet20", "[tensorboard,mlflow]"),
                                         ("resnet32", "tensorboard")] * 2):
        fake_run(folder / str(i), config, [f"model={model}", f"optimizer.lr=0.0123456789{i % 2}",
                                           f"logger={logger}", f"seed={i}"], "finished",
                 {m: 0.5 + i / 10 + 1e-5 * i for m in report.DEFAULT_METRICS})


@pytest.mark.parametrize("width", [60, 80, 100, 200])
def test_the_console_table_cuts_nothing_at_any_width(sweep, tmp_path, compose_cfg, width):
    config = OmegaConf.to_container(compose_cfg("model=vgg"), resolve=False)
    config.pop("hydra")
    long_label_runs(tmp_path / "long", config)
    for name, folder, everything in (("sweep", sweep, True), ("long", tmp_path / "long", False)):
        buffer = io.StringIO()
        out = report.report([str(folder)], tmp_path / f"r_{name}", figures=False,
                            everything=everything, console=Console(width=width, file=buffer))
        check_console(buffer.getvalue(), width, (out / "report.md").read_text(),
                      list(report.DEFAULT_METRICS))


def test_a_piped_report_shows_every_column_whole(sweep, tmp_path):
    result = run_cli([str(sweep), "--all", "--no-figures", "--out", str(tmp_path / "r")],
                     tmp_path, timeout=120, module="resnet_exp.report")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "left out to fit" not in result.stdout
    check_console(result.stdout, None, (tmp_path / "r" / "report.md").read_text(),
                  list(report.DEFAULT_METRICS))
    assert f"report: {tmp_path / 'r' / 'report.md'}" in result.stdout.splitlines()
