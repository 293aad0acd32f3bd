"""`python -m resnet_exp.report` for a paper: confidence intervals and Welch's t-test
against scipy and textbook values, the LaTeX table, vector figures, loss curves on a log axis,
failed and interrupted runs left out unless --all (the console at any width:
test_report_console.py). The runs are the shared real sweep (conftest's smoke_sweep: VGG08
without and with shortcuts, seeds 1 and 2), plus a failed and an interrupted job made from two
of its jobs."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import job_dirs
from omegaconf import OmegaConf
from scipy import stats as scipy_stats
from test_report import fake_run, read_csv

from resnet_exp import report, runs
from resnet_exp.core import figures
from resnet_exp.runs import report_figures, stats
from resnet_exp.runs.compare import curve_panels, group, read_run

TYPO = "+trainer.max_epoch=3"  # a failed run's typo, which once grew a column of its own


def with_failures(smoke_sweep: Path, folder: Path) -> Path:
    """A copy of the real sweep, with job 4 failed (on a typo'd key) and job 5 interrupted, as
    train.py leaves them: run.json's status and error, no metrics.json."""
    shutil.copytree(smoke_sweep, folder)
    for num, (source, status) in enumerate(zip(job_dirs(folder)[:2], ("failed", "interrupted"),
                                               strict=True), 4):
        job = folder / f"{num}_{status}"
        shutil.copytree(source, job)
        (job / runs.METRICS_FILE).unlink()
        info = json.loads((job / runs.RUN_FILE).read_text())
        info.update(status=status, error="TypeError: Trainer.__init__() got an unexpected "
                    "keyword argument 'max_epoch'" if status == "failed" else None)
        (job / runs.RUN_FILE).write_text(json.dumps(info))
        if status == "failed":
            overrides = job / ".hydra" / "overrides.yaml"
            overrides.write_text(yaml.safe_dump([*yaml.safe_load(overrides.read_text()), TYPO]))
    return folder


@pytest.fixture(scope="module")
def sweep(smoke_sweep, tmp_path_factory) -> Path:
    return with_failures(smoke_sweep, tmp_path_factory.mktemp("paper") / "sweep")


def seeds_of(folder: Path, metric: str) -> dict[str, list[float]]:
    """model.residual -> the metric of each finished job, read from the jobs' own files."""
    found: dict[str, list[float]] = {}
    for job in job_dirs(folder):
        if json.loads((job / runs.RUN_FILE).read_text())["status"] == "finished":
            overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
            residual = next(o.split("=")[1].lower() for o in overrides if "residual" in o)
            metrics = json.loads((job / runs.METRICS_FILE).read_text())
            found.setdefault(residual, []).append(metrics[metric])
    return found


def test_t_quantiles_and_welch_match_textbook_values():
    """t(0.975, 3) = 3.182 (any t table); Wikipedia's 'Welch's t-test' examples 1 and 2:
    t = -2.46, dof = 25.0, p = 0.021 and t = -1.57, dof = 9.9, p = 0.149."""
    low, high = stats.ci95((10.0, 2.0, 4))
    assert (high - 10.0) == pytest.approx(3.182 * 2.0 / 2, abs=1e-3) and low == 20.0 - high
    examples = [([27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0,
                  21.7, 21.4],
                 [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9,
                  20.5, 24.4], (-2.46, 25.0, 0.021)),
                ([17.2, 20.9, 22.6, 18.1, 21.7, 21.4, 23.5, 24.2, 14.7, 21.8],
                 [21.5, 22.8, 21.0, 23.0, 21.6, 23.6, 22.5, 20.7, 23.4, 21.8, 20.7, 21.7, 21.5,
                  22.5, 23.6, 21.5, 22.5, 23.5, 21.5, 21.8], (-1.57, 9.9, 0.149))]
    for a, b, (t, dof, p) in examples:
        test = stats.welch(*((statistics.fmean(x), statistics.stdev(x), len(x)) for x in (a, b)))
        assert (round(test.t, 2), round(test.dof, 1), round(test.p, 3)) == (t, dof, p)
    assert stats.welch((1.0, 0.0, 3), (1.0, 0.0, 2)) is None  # every seed gave the same value


def test_intervals_and_welch_of_real_runs_match_scipy(sweep, tmp_path):
    out = report.report([str(sweep)], tmp_path / "rep", ["test/loss", "test/acc"],
                        figures=False, compare=["false", "model.residual=true"])
    values = seeds_of(sweep, "test/loss")
    for row in read_csv(out / "report.csv"):
        seeds = values[row["model.residual"]]
        mean, sem = statistics.fmean(seeds), scipy_stats.sem(seeds)
        low, high = scipy_stats.t.interval(0.95, len(seeds) - 1, loc=mean, scale=sem)
        assert float(row["test/loss ci95 low"]) == pytest.approx(low, rel=1e-9)
        assert float(row["test/loss ci95 high"]) == pytest.approx(high, rel=1e-9)
    reference = scipy_stats.ttest_ind(values["false"], values["true"], equal_var=False)
    md = (out / "report.md").read_text()
    found = re.search(r"Welch's t-test of test/loss, row 1 model\.residual=false .* vs "
                      r"row 2 model\.residual=true .*: t = (\S+), dof = (\S+), p = (\S+) \(", md)
    assert found, md
    t, dof, p = map(float, found.groups())
    assert t == pytest.approx(reference.statistic, rel=1e-3)
    assert dof == pytest.approx(reference.df, rel=5e-3)
    assert p == pytest.approx(reference.pvalue, rel=5e-3)


@pytest.mark.parametrize(("names", "message"), [
    (["1", "1"], "both name row 1"),
    (["3", "2"], "--compare 3: names no configuration; give a row number or words of one "
                 "label (key=value where a value is also a row number): 1 model.residual=false,"
                 " 2 model.residual=true"),
    (["model.residual", "2"], "--compare model.residual: fits rows 1 and 2"),
])
def test_compare_names_two_configurations_or_says_why_in_one_line(sweep, tmp_path, capsys,
                                                                  names, message):
    assert report.main([str(sweep), "--no-figures", "--out", str(tmp_path / "r"),
                        "--compare", *names]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_compare_refuses_a_number_that_is_a_row_and_a_value(tmp_path, compose_cfg):
    config = OmegaConf.to_container(compose_cfg("model=vgg"), resolve=False)
    config.pop("hydra")
    for i, (depth, seed) in enumerate([(2, 1), (2, 2), (8, 1), (8, 2)]):
        fake_run(tmp_path / "o" / str(i), config, [f"model.depth={depth}", f"seed={seed}"],
                 "finished", {"test/acc": 0.5 + i / 10})
    with pytest.raises(report.UserError, match="--compare 2: fits rows 1 and 2"):
        report.report([str(tmp_path / "o")], tmp_path / "r", figures=False, compare=["2", "8"])
    out = report.report([str(tmp_path / "o")], tmp_path / "r", figures=False,
                        compare=["model.depth=2", "8"])
    assert "row 1 model.depth=2 (0.55 ± 0.071, n=2) vs row 2 model.depth=8" in (
        out / "report.md").read_text()


def test_failed_and_interrupted_runs_are_left_out_unless_all(sweep, tmp_path, capsys):
    out = report.report([str(sweep)], tmp_path / "default", figures=False)
    rows = read_csv(out / "report.csv")
    assert [(r["model.residual"], r["n"], r["not averaged"]) for r in rows] == [
        ("false", "2", ""), ("true", "2", "")]  # no trainer.max_epoch column, no n = 0 row
    assert len(read_csv(out / "runs.csv")) == 4
    assert ("Left out 2 runs that did not finish: 1 failed, 1 interrupted (--all brings them)."
            in capsys.readouterr().out.splitlines())
    assert "1 failed, 1 interrupted" in (out / "report.md").read_text()
    everything = report.report([str(sweep)], tmp_path / "all", figures=False, everything=True)
    statuses = {r["status"] for r in read_csv(everything / "runs.csv")}
    assert statuses == {"finished", "failed", "interrupted"}
    shown = capsys.readouterr().out
    assert "Runs not averaged" in shown and "failed · " in shown and "interrupted · " in shown
    for job in (sweep / "4_failed", sweep / "5_interrupted"):  # each path a line of its own
        assert f"    {job}" in shown.splitlines()
    with pytest.raises(report.UserError, match=r"every run here ended without finishing "
                                               r"\(1 failed\); --all reports them"):
        report.report([str(sweep / "4_failed")], tmp_path / "x", figures=False)


# -- the files for a paper -----------------------------------------------------------------------

LATEX_ENGINE = next(filter(shutil.which, ("pdflatex", "lualatex", "xelatex", "tectonic")), None)
ESCAPED = re.compile(r"\\(textbackslash|textasciitilde|textasciicircum|textless|textgreater|"
                     r"textbar)\{\}|\\[&%$#_{}]")


def tabular(tex: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of report.tex's booktabs tabular, checking its rules' order."""
    lines = [line.strip() for line in tex.splitlines()]
    top, mid, bottom = (lines.index(rule) for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
    assert top + 2 == mid < bottom and r"\usepackage{booktabs}" in tex and "|" not in tex
    split = [line.removesuffix(r" \\").split(" & ") for line in lines[top + 1:bottom]
             if line != r"\midrule"]
    return split[0], split[1:]


def compiles(tex: Path) -> None:
    document = tex.with_name("paper.tex")
    document.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n"
                        f"\\begin{{document}}\n\\input{{{tex.name}}}\n\\end{{document}}\n")
    result = subprocess.run([LATEX_ENGINE, "-interaction=nonstopmode", document.name],
                            cwd=tex.parent, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and document.with_suffix(".pdf").is_file(), result.stdout


def test_the_latex_table_is_booktabs_with_the_reports_numbers(sweep, tmp_path):
    out = report.report([str(sweep)], tmp_path / "rep", ["test/loss", "test_last/acc"],
                        figures=False)
    header, rows = tabular((out / "report.tex").read_text())
    assert header == ["model.residual", "n", "test/loss", r"test\_last/acc"]
    cell = re.compile(r"(\S+) \$\\pm\$ (\S+) \{\\scriptsize \[(\S+), (\S+)\]\}")
    for row, reference in zip(rows, read_csv(out / "report.csv"), strict=True):
        assert row[:2] == [reference["model.residual"], reference["n"]]
        numbers = [float(x.strip("$")) for x in cell.fullmatch(row[2]).groups()]
        expected = [float(reference[f"test/loss {s}"])
                    for s in ("mean", "std", "ci95 low", "ci95 high")]
        for got, want, digits in zip(numbers, expected, (4, 2, 4, 4), strict=True):
            assert got == pytest.approx(want, rel=0.5 * 10 ** (1 - digits))  # as rounded
    if LATEX_ENGINE:
        compiles(out / "report.tex")


def test_latex_escapes_every_special_character_of_a_name(tmp_path, compose_cfg):
    config = OmegaConf.to_container(compose_cfg("model=vgg"), resolve=False)
    config.pop("hydra")
    odd = "50%_a&b#1 $x^2~{y} <z|w> c:\\d"
    for i, note in enumerate([odd, "plain"]):
        fake_run(tmp_path / "o" / str(i), config, [f"+note='{note}'", f"seed={i}"],
                 "finished", {"test/acc": 0.5, "my_metric%": 1.0})
    out = report.report([str(tmp_path / "o")], tmp_path / "r", ["my_metric%"], figures=False)
    header, rows = tabular((out / "report.tex").read_text())
    assert header == ["note", "n", r"my\_metric\%"]
    assert rows[0][0] == (r"50\%\_a\&b\#1 \$x\textasciicircum{}2\textasciitilde{}\{y\} "
                          r"\textless{}z\textbar{}w\textgreater{} c:\textbackslash{}d")
    assert not re.search(r"[&%$#_{}~^\\<>|]", ESCAPED.sub("", rows[0][0]))
    if LATEX_ENGINE:
        compiles(out / "report.tex")


def test_figures_are_png_at_150_dpi_and_pdf_and_svg_with_text(sweep, tmp_path):
    from PIL import Image

    out = report.report([str(sweep)], tmp_path / "rep")
    md = (out / "report.md").read_text()
    pngs = sorted(out.glob("*.png"))
    assert {p.name for p in pngs} == {"curves.png", "gradient_flow.png",
                                      "sweep_model.residual.png"}
    for png in pngs:
        assert round(Image.open(png).info["dpi"][0]) >= 150, png
        pdf = png.with_suffix(".pdf").read_bytes()
        # TrueType (Type 42) fonts: publishers' PDF checks refuse matplotlib's default Type 3
        assert pdf.startswith(b"%PDF") and b"/FontFile2" in pdf and b"/Type3" not in pdf
        svg = ET.parse(png.with_suffix(".svg")).getroot()
        assert svg.tag.endswith("svg") and f"]({png.stem}.pdf)" in md
    texts = {t.text for t in ET.parse(out / "curves.svg").iter("{http://www.w3.org/2000/svg}text")}
    assert {"train/loss (log scale)", "val/loss (log scale)", "train/acc", "val/acc"} <= texts


def test_loss_curves_are_on_a_log_axis(sweep):
    configs, _ = group([read_run(job) for job in job_dirs(sweep)[:4]])
    fig = figures.curves(curve_panels(configs), log_y=report_figures.LOG_PANELS)
    assert {ax.get_title(): ax.get_yscale() for ax in fig.axes if ax.get_visible()} == {
        "train/loss (log scale)": "log", "val/loss (log scale)": "log",
        "train/acc": "linear", "val/acc": "linear"}


@pytest.mark.parametrize(("log_y", "spread"), [((), (0, 0.1)), (report_figures.LOG_PANELS,
                                                                 (0.3, 1))])
def test_an_epoch_one_loss_spike_no_longer_flattens_the_curves(log_y, spread):
    """Issue 29's val/loss: 32 +- 18 at epoch 1, then 2.3 falling to 0.3. On a linear axis the
    later epochs take under a tenth of the panel's height; on the log axis a third or more."""
    epochs = np.arange(1, 16)
    loss = np.r_[32.0, 2.3 * 0.86 ** np.arange(14)]
    fig = figures.curves({"val/loss": {"a": (epochs, loss, np.r_[18.0, loss[1:] / 10])}},
                         log_y=log_y)
    figures.render(fig)
    ax = fig.axes[0]
    heights = ax.transAxes.inverted().transform(ax.transData.transform(
        np.c_[epochs[1:], loss[1:]]))[:, 1]
    assert spread[0] < heights.max() - heights.min() < spread[1]
