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
import glob
import os
import re
import statistics
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from resnet_exp import runs
from resnet_exp.errors import UserError

DEFAULT_METRICS = ("test/acc", "test_last/acc", "val/acc_best", "best_epoch", "params/trainable",
                   "time/total_s")
# panel -> the logged tags it can come from, first found wins (train loss is logged per step too)
CURVES = {"train/loss": ("train/loss_epoch", "train/loss"), "val/loss": ("val/loss",),
          "train/acc": ("train/acc",), "val/acc": ("val/acc",)}
TRANSFER_MODES = ("scratch", "feature_extract", "finetune")
# runs: below this, reading event files in a process pool costs more than it saves
PARALLEL_FROM = 16


@dataclass
class Run:
    path: Path
    status: str
    seed: object
    overrides: dict[str, str]  # key -> value as given on the command line, seed left out
    metrics: dict
    config: dict
    error: str | None = None
    _choices: dict | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.status == "finished" and bool(self.metrics)

    def value(self, key: str) -> str:
        """The value a run had for an override key: as given, else from its saved config, else
        its config-group choice (e.g. `model` for a run that kept the default)."""
        if key in self.overrides:
            return self.overrides[key]
        node = self.config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None and not isinstance(node, dict):
            return _text(node)
        if self._choices is None:
            self._choices = runs.read_choices(self.path)
        return _text(self._choices[key]) if key in self._choices else "-"


def _text(value) -> str:
    """A config value as it would be written in an override (true, null, 0.1)."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, list):
        return "[" + ",".join(_text(v) for v in value) + "]"
    return str(value)


def _normal(value: str) -> str:
    # a sweep writes its jobs' overrides as Python prints them (model.residual=False), the
    # command line as typed (model.residual=false): one spelling, so the runs group together
    lower = value.lower()
    if lower in ("true", "false", "null"):
        return lower
    return "null" if value == "None" else value


def load_run(path: Path) -> Run:
    try:
        info = runs.read_json(path / runs.RUN_FILE) if (path / runs.RUN_FILE).is_file() else {}
    except ValueError:
        info = {"status": "unreadable run.json"}
    status = info.get("status") or "no run.json"
    metrics = {}
    if (path / runs.METRICS_FILE).is_file():
        metrics = runs.read_json(path / runs.METRICS_FILE)
    elif status == "finished":
        status = "finished, no metrics.json"
    overrides = dict(o.partition("=")[::2] for o in runs.read_overrides(path))
    overrides = {key.lstrip("+"): _normal(value) for key, value in overrides.items()}
    seed = overrides.pop("seed", info.get("seed"))
    overrides.pop("resume", None)  # how a job was (re)started, not what it trained
    return Run(path, status, seed, overrides, metrics, runs.read_saved_config(path),
               info.get("error"))


def collect(patterns: list[str]) -> list[Path]:
    """Run folders named by, or found below, each path or glob; a clear error for the rest."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        paths = [Path(pattern)] if Path(pattern).exists() else [
            Path(p) for p in sorted(glob.glob(pattern))]
        if not paths:
            what = "no folder matches this pattern" if glob.has_magic(pattern) else "no such folder"
            raise UserError(f"{pattern}: {what}")
        for path in paths:
            if not path.is_dir():
                raise UserError(f"{path} is a file: give run folders or sweep folders")
            run_dirs = runs.find_runs(path)
            if not run_dirs and runs.is_sweep_dir(path):
                raise UserError(f"{path} is a sweep folder with no runs in it: none of its jobs "
                                "has started (a job folder gets run.json when it starts)")
            if not run_dirs:
                raise UserError(
                    f"{path} is not a run folder and holds none: a run folder has run.json and "
                    ".hydra/ (outputs/runs/<date>_<time>_<name>/); a sweep folder holds numbered "
                    "run folders (outputs/multirun/<date>_<time>/)")
            found.update(dict.fromkeys(p.resolve() for p in run_dirs))
    return list(found)


@dataclass
class Configuration:
    values: dict[str, str]  # the differing keys' values: the row's label
    runs: list[Run]

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.values.items()) or "all runs"

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.done]

    def stats(self, metric: str) -> tuple[float, float | None, int] | None:
        values = [float(r.metrics[metric]) for r in self.finished
                  if isinstance(r.metrics.get(metric), (int, float))]
        if not values:
            return None
        std = statistics.stdev(values) if len(values) > 1 else None
        return statistics.fmean(values), std, len(values)

    def not_averaged(self) -> str:
        counts = Counter(r.status for r in self.runs if not r.done)
        return ", ".join(f"{counts[status]} {status}" for status in sorted(counts))


def group(all_runs: list[Run]) -> tuple[list[Configuration], dict[str, str]]:
    """Configurations (in the order their first run appears) and the settings they all share."""
    keys = list(dict.fromkeys(k for r in all_runs for k in r.overrides))
    groups: dict[tuple, list[Run]] = {}
    for run in all_runs:
        groups.setdefault(tuple(run.value(k) for k in keys), []).append(run)
    differing = [i for i in range(len(keys)) if len({g[i] for g in groups}) > 1]
    common = {keys[i]: value for i, value in enumerate(next(iter(groups))) if i not in differing}
    configs = [Configuration({keys[i]: g[i] for i in differing}, members)
               for g, members in groups.items()]
    return configs, common


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

def read_all_scalars(paths: list[Path]) -> list[dict]:
    if len(paths) < PARALLEL_FROM:
        return [runs.read_scalars(p) for p in paths]
    with ProcessPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(runs.read_scalars, paths, chunksize=4))


def curve_panels(configs: list[Configuration]):
    import numpy as np

    finished = [r for c in configs for r in c.finished]
    paths = [r.path for r in finished]
    scalars = dict(zip(paths, read_all_scalars(paths), strict=True))
    panels: dict = {panel: {} for panel in CURVES}
    for config in configs:
        for panel, tags in CURVES.items():
            # one point per epoch for epoch-level tags: x = 1..epochs
            series = [next((s[t] for t in tags if t in s), None)
                      for s in (scalars[r.path] for r in config.finished)]
            series = [[v for _, v in s] for s in series if s]
            if not series:
                continue
            length = min(len(s) for s in series)
            values = np.array([s[:length] for s in series])
            std = values.std(0, ddof=1) if len(values) > 1 else None
            panels[panel][config.label] = (np.arange(1, length + 1), values.mean(0), std)
    return {k: v for k, v in panels.items() if v}


def _number(text: str) -> float | None:
    try:
        return float(text) if text.lower() not in ("nan", "inf", "-inf", "true", "false") else None
    except ValueError:
        return None


def _natural(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def sweep_lines(configs: list[Configuration], key: str, metric: str):
    """x = the values of `key`, one line per combination of the other differing keys."""
    points = [(c, c.stats(metric)) for c in configs]
    points = [(c, s) for c, s in points if s is not None]
    xs = sorted({c.values[key] for c, _ in points}, key=_natural)
    numeric = all(_number(x) is not None for x in xs)
    if numeric:
        xs.sort(key=float)
    lines: dict = {}
    for config, (mean, std, _) in points:
        rest = " ".join(f"{k}={v}" for k, v in config.values.items() if k != key) or metric
        x = float(config.values[key]) if numeric else xs.index(config.values[key])
        lines.setdefault(rest, []).append((x, mean, std or 0.0))
    lines = {label: tuple(map(list, zip(*sorted(p), strict=True))) for label, p in lines.items()}
    return lines, numeric, xs


def draw(configs: list[Configuration], metric: str, out: Path) -> list[tuple[str, str]]:
    """Every figure the runs allow; returns (title, file name) pairs."""
    from resnet_exp import figures

    drawn = []
    if not any(c.finished for c in configs):
        return drawn
    panels = curve_panels(configs)
    if panels:
        figures.save(figures.curves(panels), out / "curves.png")
        drawn.append(("Training and validation curves (mean ± std over seeds)", "curves.png"))
    for key in configs[0].values:
        lines, numeric, ticks = sweep_lines(configs, key, metric)
        if len({x for line in lines.values() for x in line[0]}) > 1:
            name = "sweep_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", key) + ".png"
            figures.save(figures.sweep(key, metric, lines, numeric, ticks), out / name)
            drawn.append((f"{metric} vs {key} (error bars: ± 1 std over seeds)", name))
    flows = {}
    for config in configs:
        run = next((r for r in config.finished
                    if (r.path / runs.GRADIENT_FLOW_FILE).is_file()), None)
        if run is not None:
            flows[f"{config.label} (seed {run.seed})"] = runs.read_gradient_flow(
                run.path / runs.GRADIENT_FLOW_FILE)
    if flows:
        figures.save(figures.gradient_flows(flows), out / "gradient_flow.png")
        drawn.append(("Gradient flow, one line per epoch", "gradient_flow.png"))
    if any(str(r.config.get("model", {}).get("mode")) in TRANSFER_MODES
           for c in configs for r in c.finished if isinstance(r.config.get("model"), dict)):
        shown = [c for c in configs if c.stats(metric)]
        quantities = {metric: metric, "params/trainable": "params/trainable",
                      "best_epoch": "epochs to best"}
        bar_panels = {}
        for key, title in quantities.items():
            stats = [c.stats(key) for c in shown]
            shift = 1 if key == "best_epoch" else 0  # best_epoch counts from 0
            bar_panels[title] = ([c.label for c in shown],
                                 [s[0] + shift if s else 0.0 for s in stats],
                                 [s[1] or 0.0 if s else 0.0 for s in stats])
        figures.save(figures.bars(bar_panels, "Transfer learning"), out / "transfer.png")
        drawn.append(("Transfer learning: accuracy, trainable parameters, epochs to best",
                      "transfer.png"))
    return drawn


# -- outputs ----------------------------------------------------------------------------------

def write_outputs(out: Path, configs, common, metrics, drawn, argv) -> None:
    keys = list(configs[0].values)
    with open(out / "report.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*keys, "n", "not averaged",
                         *(f"{m} {s}" for m in metrics for s in ("mean", "std"))])
        for c in configs:
            stats = [c.stats(m) for m in metrics]
            writer.writerow([*c.values.values(), len(c.finished), c.not_averaged(),
                             *(v for s in stats for v in ((s[0], s[1]) if s else ("", "")))])
    with open(out / "runs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "status", "seed", *keys, *metrics])
        for c in configs:
            for r in c.runs:
                writer.writerow([r.path, r.status, r.seed, *c.values.values(),
                                 *(r.metrics.get(m, "") for m in metrics)])
    lines = [f"# Report: {counted(configs)}", "",
             f"`python -m resnet_exp.report {' '.join(argv)}`, {datetime.now():%Y-%m-%d %H:%M}",
             "", "Mean ± std over the seeds of the finished runs; n finished runs."]
    if common:
        lines += ["", "Same in every run: " + " ".join(f"`{k}={v}`" for k, v in common.items())]
    header = [*(keys or ["configuration"]), "n", *metrics, "not averaged"]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in configs:
        row = [*(c.values.values() if keys else ["all runs"]), str(len(c.finished)),
               *(cell(c.stats(m)) for m in metrics), c.not_averaged()]
        lines.append("| " + " | ".join(row) + " |")
    left_out = [(c, r) for c in configs for r in c.runs if not r.done]
    if left_out:
        lines += ["", "## Runs not averaged", "", "| run | status | configuration | error |",
                  "|---|---|---|---|"]
        for c, r in left_out:
            error = r.error.splitlines()[0][:120] if r.error else ""
            lines.append(f"| {r.path} | {r.status} | {c.label} | {error} |")
    for title, name in drawn:
        lines += ["", f"## {title}", "", f"![{title}]({name})"]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def print_table(configs, common, metrics) -> None:
    from rich.table import Table

    from resnet_exp.console import console

    keys = list(configs[0].values)
    table = Table(title=f"{counted(configs)} (mean ± std over seeds)",
                  header_style="bold",
                  caption=" ".join(f"{k}={v}" for k, v in common.items()) or None)
    for key in keys or ["configuration"]:
        table.add_column(key)
    table.add_column("n", justify="right")
    for metric in metrics:
        table.add_column(metric, justify="right")
    table.add_column("not averaged", style="yellow")
    for c in configs:
        table.add_row(*(c.values.values() if keys else ["all runs"]), str(len(c.finished)),
                      *(cell(c.stats(m)) for m in metrics), c.not_averaged())
    console.print(table)
    left_out = [(c, r) for c in configs for r in c.runs if not r.done]
    if left_out:
        rest = Table(title="Runs not averaged", header_style="bold")
        for column in ("run", "status", "configuration", "error"):
            rest.add_column(column, overflow="fold")
        for c, r in left_out:
            rest.add_row(str(r.path), r.status, c.label, (r.error or "")[:200])
        console.print(rest)


def report(patterns: list[str], out: Path | None = None, metrics: list[str] | None = None,
           figures: bool = True, argv: list[str] | None = None) -> Path:
    all_runs = [load_run(p) for p in collect(patterns)]
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
    out.mkdir(parents=True, exist_ok=True)
    print_table(configs, common, metrics)
    drawn = draw(configs, metrics[0], out) if figures else []
    write_outputs(out, configs, common, metrics, drawn, argv or patterns)
    return out


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
    parser.add_argument("--no-figures", action="store_true",
                        help="tables only (skips reading the TensorBoard event files)")
    args = parser.parse_args(argv)
    try:
        out = report(args.paths, args.out, args.metrics, not args.no_figures,
                     argv if argv is not None else sys.argv[1:])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from resnet_exp.console import console

    console.print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
