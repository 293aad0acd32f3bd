"""Finding run folders and reading what they hold; nothing here writes.

Reads are quick and forgiving where a report reads hundreds of runs (plain YAML, no resolver),
and strict where a run is about to be replayed (`load_config`, `checkpoint_path`: a UserError that
says why the folder cannot be used).
"""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path
from typing import Any

from resnet_exp.core.errors import UserError
from resnet_exp.runs import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    CSV_METRICS_FILE,
    DEBUG_DIR,
    HYDRA_FILE,
    METRICS_FILE,
    OVERRIDES_FILE,
    RUN_FILE,
    SWEEP_FILE,
    TENSORBOARD_DIR,
)


def read_json(path: Path) -> dict:
    """A JSON object from `path`; ValueError for any other JSON (a list, a string): every reader
    of run.json and metrics.json treats both as a damaged file."""
    with open(path) as f:
        value = json.load(f)
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a JSON {type(value).__name__}, not an object")
    return value


def run_status(run_dir: Path) -> str | None:
    """The status of a run folder, or None when it is not one."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        return None
    try:
        return read_json(path).get("status")
    except (OSError, ValueError):
        return None


def read_metrics(run_dir: Path) -> dict:
    """A run's metrics.json; {} when it has none (it has not finished)."""
    path = Path(run_dir) / METRICS_FILE
    return read_json(path) if path.is_file() else {}


def is_run_dir(path: Path) -> bool:
    path = Path(path)
    return (path / RUN_FILE).is_file() or (path / CONFIG_FILE).is_file()


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def natural_key(text: str | Path) -> list:
    """Sort key putting numbers in numeric order: job 2 before job 10, lr 0.5 before 0.05 never.

    >>> sorted(["10", "2", "a1"], key=natural_key)
    ['2', '10', 'a1']
    """
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(text))]


def find_runs(path: Path) -> list[Path]:
    """The run folders at or below `path` (itself, a sweep, or e.g. all of outputs/), in natural
    order; the inside of a run folder is not searched, nor a debug/ folder below `path` (debug
    runs are read when named: report outputs/debug)."""
    path = Path(path)
    if is_run_dir(path):
        return [path]
    found, stack = [], [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.name == DEBUG_DIR or not entry.is_dir():
                continue
            (found if is_run_dir(entry.path) else stack).append(Path(entry.path))
    return sorted(found, key=natural_key)


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
            run_dirs = find_runs(path)
            if not run_dirs and is_sweep_dir(path):
                raise UserError(f"{path} is a sweep folder with no runs in it: none of its jobs "
                                "has started (a job folder gets run.json when it starts)")
            if not run_dirs:
                raise UserError(
                    f"{path} is not a run folder and holds none: a run folder has run.json and "
                    ".hydra/ (outputs/runs/<date>_<time>_<name>/); a sweep folder holds numbered "
                    "run folders (outputs/multirun/<date>_<time>/)")
            found.update(dict.fromkeys(p.resolve() for p in run_dirs))
    return list(found)


def _read_yaml(path: Path) -> Any:
    import yaml

    # libyaml's C loader: ~10x faster than the pure-Python one over hundreds of config files
    with open(path) as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def read_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides of a run (`.hydra/overrides.yaml`), [] when it has none."""
    path = Path(run_dir) / OVERRIDES_FILE
    return [str(o) for o in _read_yaml(path) or []] if path.is_file() else []


def read_saved_config(run_dir: Path) -> dict:
    """`.hydra/config.yaml` as plain data, interpolations left as `${...}` text: quick to read
    for hundreds of runs and never fails on a resolver. {} when missing."""
    path = Path(run_dir) / CONFIG_FILE
    return (_read_yaml(path) or {}) if path.is_file() else {}


def read_choices(run_dir: Path) -> dict[str, str]:
    """The option chosen in each config group (`model: resnet20`, ...), from `.hydra/hydra.yaml`."""
    path = Path(run_dir) / HYDRA_FILE
    if not path.is_file():
        return {}
    node = _read_yaml(path) or {}
    return dict(node.get("hydra", {}).get("runtime", {}).get("choices", {}) or {})


def read_searchpath(run_dir: Path) -> list[str]:
    """The config folders the run added to conf/ (`hydra.searchpath`, from `.hydra/hydra.yaml`)."""
    path = Path(run_dir) / HYDRA_FILE
    node = (_read_yaml(path) or {}) if path.is_file() else {}
    return [str(p) for p in node.get("hydra", {}).get("searchpath", None) or []]


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every logged scalar series as (step, value) pairs: from the CSV log when the run has one
    (quick), else from the TensorBoard event files in tensorboard/ (not its subfolders: older runs'
    gradient-flow scalars there are not curves and outnumber them a hundred to one)."""
    run_dir = Path(run_dir)
    series: dict[str, list[tuple[int, float]]] = {}
    if (run_dir / CSV_METRICS_FILE).is_file():
        import csv

        with open(run_dir / CSV_METRICS_FILE, newline="") as f:
            for row in csv.DictReader(f):
                step = int(row.get("step") or 0)
                for tag, value in row.items():
                    if value not in ("", None) and tag != "step":
                        series.setdefault(tag, []).append((step, float(value)))
        return series
    if not (run_dir / TENSORBOARD_DIR).is_dir():
        return series
    from tensorboard.backend.event_processing import event_accumulator as ea

    # keep every scalar (0 = no limit); hold no images, histograms or tensors in memory
    sizes = {ea.SCALARS: 0, ea.IMAGES: 1, ea.HISTOGRAMS: 1, ea.TENSORS: 1, ea.AUDIO: 1,
             ea.COMPRESSED_HISTOGRAMS: 1}
    events = ea.EventAccumulator(str(run_dir / TENSORBOARD_DIR), size_guidance=sizes).Reload()
    for tag in events.Tags()[ea.SCALARS]:
        series[tag] = [(e.step, e.value) for e in events.Scalars(tag)]
    return series


def load_config(run_dir: Path):
    """A run's saved `.hydra/config.yaml` as an OmegaConf config (interpolations unresolved),
    or a UserError saying why the folder cannot be used as a run."""
    from omegaconf import OmegaConf

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder: give the folder of a run")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise UserError(
            f"{run_dir} has no {CONFIG_FILE}, so it is not a run folder (or its config was "
            "deleted): give a folder under outputs/runs/ or outputs/multirun/<sweep>/"
        )
    try:
        return OmegaConf.load(path)
    except Exception as e:  # yaml's and OmegaConf's errors share no base class
        raise UserError(f"{path} cannot be read ({type(e).__name__}: {e})") from None


def checkpoint_path(run_dir: Path, which: str = "best") -> Path:
    """`checkpoints/best.ckpt` or `last.ckpt` of a run, or a UserError when it has none."""
    path = Path(run_dir) / CHECKPOINT_DIR / f"{which}.ckpt"
    if not path.is_file():
        status = run_status(run_dir) or "no run.json"
        raise UserError(f"{path} does not exist (the run's status: {status}): nothing to load")
    return path


def last_checkpoint(run_dir: Path) -> Path | None:
    path = Path(run_dir) / CHECKPOINT_DIR / "last.ckpt"
    return path if path.is_file() else None


def read_gradient_flow(path: Path) -> tuple[list[str], dict[int, list[float]]]:
    """A gradient_flow.csv (gradflow.py writes it): the weight layers in depth order and, per
    epoch, their average |gradient|."""
    import csv

    layers: dict[int, str] = {}
    epochs: dict[int, dict[int, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            index = int(row["index"])
            layers[index] = row["layer"]
            epochs.setdefault(int(row["epoch"]), {})[index] = float(row["mean_abs_grad"])
    order = sorted(layers)
    return [layers[i] for i in order], {
        epoch: [values.get(i, float("nan")) for i in order] for epoch, values in epochs.items()
    }
