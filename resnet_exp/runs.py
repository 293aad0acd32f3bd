"""The run folder: the only code that knows its layout.

    <run>/.hydra/config.yaml      resolved config (Hydra), overrides.yaml, hydra.yaml
    <run>/run.json                status (running/finished/failed/interrupted), times, provenance
    <run>/metrics.json            final metrics; written only when the run finished
    <run>/checkpoints/best.ckpt   best by the monitored metric; last.ckpt
    <run>/tensorboard/            event files (scalars, images, hparams)
    <run>/gradient_flow.csv       per-epoch gradient statistics per layer (gradflow.py)
    <run>/figures/                PNGs: gradient flow, confusion matrix, predictions, augmentation

A run is finished exactly when run.json says so; metrics.json is written before that status, so
a crash between the two leaves a run that still says "running" rather than a finished-looking one.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from resnet_exp.errors import UserError

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
CONFIG_FILE = Path(".hydra") / "config.yaml"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
CSV_METRICS_FILE = Path("csv") / "metrics.csv"
GRADIENT_FLOW_FILE = "gradient_flow.csv"
GRADIENT_FLOW_COLUMNS = ("epoch", "index", "layer", "mean_abs_grad", "grad_l2_norm", "steps")
FIGURES_DIR = "figures"
SWEEP_FILE = "multirun.yaml"  # Hydra writes it at the top of a sweep folder
STATUSES = ("running", "finished", "failed", "interrupted")
_PACKAGES = (
    "resnet-exp", "torch", "torchvision", "pytorch-lightning", "torchmetrics", "hydra-core",
    "omegaconf", "numpy", "tensorboard",
)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temporary file in the same folder, then rename: readers see the old file or the
    new one, never half of one (os.replace is atomic on POSIX)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from the rest of a team
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def git_state(cwd: Path | None = None) -> dict:
    """Commit and dirty flag of the code that ran (None outside a git checkout)."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        def git(*args):
            return subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()

        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_description() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name()} x{torch.cuda.device_count()}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


class RunRecord:
    """Keeps run.json up to date for one run folder.

    `write=False` for the DDP ranks other than 0 (distributed.py): they run the same code, but
    the folder has one writer.
    """

    def __init__(self, run_dir: Path, write: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / RUN_FILE
        self.write = write
        self.data: dict = read_json(self.path) if self.path.exists() else {}

    def start(self, seed: int | None, extra: dict | None = None) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.data.update(
            status="running",
            start_time=_now(),
            end_time=None,
            error=None,
            seed=seed,
            command=[Path(sys.argv[0]).name, *sys.argv[1:]],
            cwd=os.getcwd(),
            host=socket.gethostname(),
            git=git_state(),
            packages=package_versions(),
            device=device_description(),
            **(extra or {}),
        )
        self._write()

    def update(self, **fields: Any) -> None:
        """Add what is known only once the run has started (e.g. the DDP world size)."""
        self.data.update(fields)
        self._write()

    def finish(self, metrics: dict) -> None:
        if self.write:
            write_json_atomic(self.run_dir / METRICS_FILE, metrics)
        self.end("finished")

    def end(self, status: str, error: str | None = None) -> None:
        assert status in STATUSES, status
        self.data.update(status=status, end_time=_now(), error=error)
        self._write()

    @contextmanager
    def recording(self) -> Iterator[RunRecord]:
        """The status follows how the block ends: a Ctrl+C, SIGTERM or exit leaves the run
        `interrupted`, an exception `failed` (with its message); success is `finish()`'s job."""
        try:
            yield self
        except (KeyboardInterrupt, SystemExit):
            self.end("interrupted")
            raise
        except BaseException as e:
            # a user error's message is the whole story; anything else needs its type too
            self.end("failed", error=str(e) if isinstance(e, UserError) else
                     f"{type(e).__name__}: {e}")
            raise

    def _write(self) -> None:
        if self.write:
            write_json_atomic(self.path, self.data)


def run_status(run_dir: Path) -> str | None:
    """The status of a run folder, or None when it is not one."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        return None
    try:
        return read_json(path).get("status")
    except (OSError, ValueError):
        return None


# -- finding and reading runs (the report) ------------------------------------------------------

def is_run_dir(path: Path) -> bool:
    path = Path(path)
    return (path / RUN_FILE).is_file() or (path / CONFIG_FILE).is_file()


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def _natural_key(path: Path) -> list:
    # sweep jobs in numeric order: 2 before 10
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_runs(path: Path) -> list[Path]:
    """The run folders at or below `path` (itself, a sweep, or e.g. all of outputs/), in natural
    order; the inside of a run folder is not searched."""
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
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            (found if is_run_dir(entry.path) else stack).append(Path(entry.path))
    return sorted(found, key=_natural_key)


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
    path = Path(run_dir) / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return {}
    node = _read_yaml(path) or {}
    return dict(node.get("hydra", {}).get("runtime", {}).get("choices", {}) or {})


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every logged scalar series as (step, value) pairs: from the CSV log when the run has one
    (quick), else from the TensorBoard event files in tensorboard/ (not its subfolders: the
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


# -- resuming, reproducing and evaluating a run (resume.py, reproduce.py, eval.py) --------------

def load_config(run_dir: Path):
    """A run's saved `.hydra/config.yaml` as an OmegaConf config (interpolations unresolved),
    or a UserError saying why the folder cannot be used as a run."""
    from omegaconf import OmegaConf

    from resnet_exp.errors import UserError

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
    from resnet_exp.errors import UserError

    path = Path(run_dir) / CHECKPOINT_DIR / f"{which}.ckpt"
    if not path.is_file():
        status = run_status(run_dir) or "no run.json"
        raise UserError(f"{path} does not exist (the run's status: {status}): nothing to load")
    return path


def last_checkpoint(run_dir: Path) -> Path | None:
    path = Path(run_dir) / CHECKPOINT_DIR / "last.ckpt"
    return path if path.is_file() else None


def note(run_dir: Path, **fields: Any) -> None:
    """Add fields to a run's run.json, keeping the rest (RunRecord.start keeps them too)."""
    path = Path(run_dir) / RUN_FILE
    data = read_json(path) if path.exists() else {}
    data.update(fields)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, data)


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
