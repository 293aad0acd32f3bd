"""The report's figures (`python -m resnet_exp.report`, resnet_exp/report.py): training and
validation curves overlaid (losses on a log scale), each swept parameter against the first
metric with error bars, gradient flow of each configuration side by side, and, for
transfer-learning runs (`model.mode`), bars of accuracy, trainable parameters and epochs to the
best epoch. Each as a PNG at DPI and as PDF and SVG beside it, for a paper."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

from resnet_exp import runs
from resnet_exp.runs import read
from resnet_exp.runs.compare import Configuration, curve_panels, sweep_lines

# models/transfer.MODES, spelled again: importing it would load torch into the report
TRANSFER_MODES = ("scratch", "feature_extract", "finetune")
# journals ask 150-300 dpi of a raster figure; the vector files serve print at any size
DPI = 150
# on a linear axis the first epoch's val/loss (32 ± 18 seen on the digits) flattens every later
# point of every curve into one line at the bottom
LOG_PANELS = ("train/loss", "val/loss")


def save(fig, path: Path) -> None:
    from resnet_exp.core import figures

    figures.save(fig, path, dpi=DPI, vector=True)


def steps(configs: list[Configuration], metric: str, out: Path) -> list[tuple[str, Callable]]:
    """Each kind of figure as (what it is, a function that draws those the runs allow and
    returns their (title, file name) pairs): the report shows its progress by them."""
    if not any(c.finished for c in configs):
        return []
    return [("curves", partial(_curves, configs, out)),
            ("sweep figures", partial(_sweeps, configs, metric, out)),
            ("gradient flow", partial(_gradient_flows, configs, out)),
            ("transfer figure", partial(_transfer, configs, metric, out))]


def draw(configs: list[Configuration], metric: str, out: Path) -> list[tuple[str, str]]:
    """Every figure the runs allow; returns (title, file name) pairs."""
    return [each for _, make in steps(configs, metric, out) for each in make()]


def _curves(configs: list[Configuration], out: Path) -> list[tuple[str, str]]:
    from resnet_exp.core import figures

    panels = curve_panels(configs)
    if not panels:
        return []
    save(figures.curves(panels, log_y=LOG_PANELS), out / "curves.png")
    return [("Training and validation curves (mean ± std over seeds; losses on a log scale)",
             "curves.png")]


def _sweeps(configs: list[Configuration], metric: str, out: Path) -> list[tuple[str, str]]:
    """One figure per swept key that takes more than one value: `metric` against it."""
    from resnet_exp.core import figures

    drawn = []
    for key in configs[0].values:
        lines, numeric, ticks = sweep_lines(configs, key, metric)
        xs = {x for xs_of_line, _, _ in lines.values() for x in xs_of_line}
        if len(xs) < 2:
            continue
        name = "sweep_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", key) + ".png"
        save(figures.sweep(key, metric, lines, numeric, ticks), out / name)
        drawn.append((f"{metric} vs {key} (error bars: ± 1 std over seeds)", name))
    return drawn


def _gradient_flows(configs: list[Configuration], out: Path) -> list[tuple[str, str]]:
    """Each configuration's first finished run with a gradient_flow.csv, side by side."""
    from resnet_exp.core import figures

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
    save(figures.gradient_flows(flows), out / "gradient_flow.png")
    return [("Gradient flow, one line per epoch", "gradient_flow.png")]


def _is_transfer(run) -> bool:
    model = run.config.get("model")
    return isinstance(model, dict) and str(model.get("mode")) in TRANSFER_MODES


def _transfer(configs: list[Configuration], metric: str, out: Path) -> list[tuple[str, str]]:
    """Transfer-learning runs (`model.mode`): accuracy, trainable parameters, epochs to best."""
    from resnet_exp.core import figures

    if not any(_is_transfer(r) for c in configs for r in c.finished):
        return []
    shown = [c for c in configs if c.stats(metric)]
    titles = {metric: metric, "params/trainable": "params/trainable",
              "best_epoch": "epochs to best"}
    panels = {}
    for key, title in titles.items():
        means, stds = [], []
        for configuration in shown:
            stats = configuration.stats(key)
            means.append(stats[0] if stats else 0.0)
            stds.append((stats[1] or 0.0) if stats else 0.0)
        panels[title] = ([c.label for c in shown], means, stds)
    save(figures.bars(panels, "Transfer learning"), out / "transfer.png")
    return [("Transfer learning: accuracy, trainable parameters, epochs to best", "transfer.png")]
