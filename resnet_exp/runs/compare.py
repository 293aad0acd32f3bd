"""Runs side by side: what each run set, which settings differ between runs, and the runs grouped
into configurations with mean ± std over their seeds. The report and the sweep table read runs
through this module, so both agree on what a run is and what was swept.

A run's settings are the keys its overrides set (Hydra's parser reads `.hydra/overrides.yaml`),
`seed` apart; a key the run did not set takes its value from the saved config, else from the
group choice in `.hydra/hydra.yaml` (`model` of a run that kept the default model).
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from resnet_exp.core import config
from resnet_exp.core.errors import UserError
from resnet_exp.runs import (
    ANALYSIS_DIR,
    LAYOUT,
    METRICS_FILE,
    NOT_TRAINING,
    RUN_FILE,
    migrate,
    read,
)

# runs: below this, reading event files in a process pool costs more than it saves
PARALLEL_FROM = 16
# the logged tags drawn as curves, one panel each (older runs' tags: migrate.scalars)
CURVES = ("train/loss", "val/loss", "train/acc", "val/acc")
# What names a run or is no setting of its training: never a grouping key (a key or anything
# under it: extras.print_config).
NOT_SETTINGS = ("seed", "name", "tags", *NOT_TRAINING)


@dataclass
class Run:
    path: Path
    status: str
    seed: object
    settings: dict[str, str]  # key -> value the run's overrides set, seed left out
    metrics: dict
    config: dict
    error: str | None = None
    layout: int = LAYOUT  # run.json's (migrate.py)
    _choices: dict | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.status == "finished" and bool(self.metrics)

    def value(self, key: str) -> str:
        """The value a run had for a setting: as given, else from its saved config, else its
        config-group choice (e.g. `model` for a run that kept the default)."""
        if key in self.settings:
            return self.settings[key]
        node = self.config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None and not isinstance(node, dict) and "${" not in str(node):
            return config.text(node)
        if self._choices is None:
            self._choices = read.read_choices(self.path)
        return config.text(self._choices[key]) if key in self._choices else "-"


def analysis_summaries(path: Path) -> dict:
    found = {}
    for result in sorted((path / ANALYSIS_DIR).glob("*.json")):
        try:
            summary = read.read_json(result).get("summary") or {}
        except (OSError, ValueError, AttributeError):
            continue
        found.update({f"analysis/{k}": v for k, v in summary.items()})
    return found


def _run_info(path: Path) -> tuple[dict, int]:
    """run.json's fields and the folder's layout; its status says why where either is unusable."""
    try:
        info = read.read_json(path / RUN_FILE) if (path / RUN_FILE).is_file() else {}
        layout = migrate.layout(info)
    except (OSError, ValueError, UserError):
        return {"status": "unreadable run.json"}, migrate.UNVERSIONED
    if layout > LAYOUT:  # listed, never averaged: its files may mean other things than ours
        info = {**info, "status": f"layout {layout}, newer than this code reads"}
    return info, layout


def read_run(path: Path) -> Run:
    """A run folder as the report and the sweep table see it; never raises on a damaged one."""
    info, layout = _run_info(path)
    status = info.get("status") or "no run.json"
    metrics = {}
    try:
        if (path / METRICS_FILE).is_file():
            metrics = migrate.metrics(read.read_json(path / METRICS_FILE), layout)
        elif status == "finished":
            status = "finished, no metrics.json"
    except (OSError, ValueError):
        status = "unreadable metrics.json"
    if metrics:  # the headline numbers of `python -m resnet_exp.analyze`, as analysis/<key>
        metrics = {**metrics, **analysis_summaries(path)}
    try:
        settings = config.overrides_dict(read.read_overrides(path))
        saved = read.read_saved_config(path)
    except Exception as e:  # a hand-edited or damaged .hydra/: listed, never averaged
        settings, saved = {}, {}
        status, info["error"] = "unreadable .hydra/", f"{type(e).__name__}: {e}"
    seed = settings.pop("seed", info.get("seed"))
    for key in [k for k in settings if k.split(".")[0] in NOT_SETTINGS]:
        settings.pop(key)
    return Run(path, status, seed, settings, metrics, saved, info.get("error"), layout)


def differing_keys(settings: list[dict[str, str]]) -> list[str]:
    """The keys whose value differs between runs (every key of a single run), in the order they
    first appear: what a sweep swept.

    >>> differing_keys([{"model": "resnet20", "seed": "1"}, {"model": "resnet20", "seed": "2"}])
    ['seed']
    """
    keys = list(dict.fromkeys(k for one in settings for k in one))
    if len(settings) < 2:
        return keys
    return [k for k in keys if len({one.get(k) for one in settings}) > 1]


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
        """(mean, std or None for one run, n) over the finished runs that have `metric`."""
        values = [float(r.metrics[metric]) for r in self.finished
                  if isinstance(r.metrics.get(metric), (int, float))]
        if not values:
            return None
        std = statistics.stdev(values) if len(values) > 1 else None
        return statistics.fmean(values), std, len(values)

    def not_averaged(self) -> str:
        counts = Counter(r.status for r in self.runs if not r.done)
        return ", ".join(f"{counts[status]} {status}" for status in sorted(counts))


def group(runs: list[Run]) -> tuple[list[Configuration], dict[str, str]]:
    """Configurations (in the order their first run appears) and the settings they all share."""
    keys = list(dict.fromkeys(k for r in runs for k in r.settings))
    rows = [{k: r.value(k) for k in keys} for r in runs]
    differing = differing_keys(rows) if len(runs) > 1 else []
    groups: dict[tuple, list[Run]] = {}
    for run, row in zip(runs, rows, strict=True):
        groups.setdefault(tuple(row[k] for k in differing), []).append(run)
    common = {k: v for k, v in rows[0].items() if k not in differing} if rows else {}
    configs = [Configuration(dict(zip(differing, values, strict=True)), members)
               for values, members in groups.items()]
    return configs, common


def read_all_scalars(paths: list[Path]) -> list[dict]:
    if len(paths) < PARALLEL_FROM:
        return [read.read_scalars(p) for p in paths]
    with ProcessPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(read.read_scalars, paths, chunksize=4))


def curve_panels(configs: list[Configuration]) -> dict:
    """panel -> configuration label -> (epochs 1..n, mean, std or None) over its seeds."""
    import numpy as np

    finished = [r for c in configs for r in c.finished]
    paths = [r.path for r in finished]
    scalars = {r.path: migrate.scalars(s, r.layout)
               for r, s in zip(finished, read_all_scalars(paths), strict=True)}
    panels: dict = {panel: {} for panel in CURVES}
    for configuration in configs:
        for panel in CURVES:
            series = [scalars[r.path].get(panel) for r in configuration.finished]
            series = [[v for _, v in s] for s in series if s]
            if not series:
                continue
            length = min(len(s) for s in series)
            values = np.array([s[:length] for s in series])
            std = values.std(0, ddof=1) if len(values) > 1 else None
            panels[panel][configuration.label] = (np.arange(1, length + 1), values.mean(0), std)
    return {k: v for k, v in panels.items() if v}


def _number(text: str) -> float | None:
    try:
        return float(text) if text.lower() not in ("nan", "inf", "-inf", "true", "false") else None
    except ValueError:
        return None


def sweep_lines(configs: list[Configuration], key: str, metric: str):
    """x = the values of `key`, one line per combination of the other differing keys; returns
    (label -> (xs, means, stds)), whether x is numeric, and the x values in order."""
    points = [(c, c.stats(metric)) for c in configs]
    points = [(c, s) for c, s in points if s is not None]
    xs = sorted({c.values[key] for c, _ in points}, key=read.natural_key)
    numeric = all(_number(x) is not None for x in xs)
    if numeric:
        xs.sort(key=float)
    lines: dict = {}
    for configuration, (mean, std, _) in points:
        rest = " ".join(f"{k}={v}" for k, v in configuration.values.items() if k != key) or metric
        x = float(configuration.values[key]) if numeric else xs.index(configuration.values[key])
        lines.setdefault(rest, []).append((x, mean, std or 0.0))
    lines = {label: tuple(map(list, zip(*sorted(p), strict=True))) for label, p in lines.items()}
    return lines, numeric, xs
