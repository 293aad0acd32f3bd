"""The run folder: the only code that knows its layout.

    <run>/.hydra/config.yaml      resolved config (Hydra), overrides.yaml, hydra.yaml
    <run>/run.json                status (running/finished/failed/interrupted), times, provenance
    <run>/metrics.json            final metrics; written only when the run finished
    <run>/checkpoints/best.ckpt   best by the monitored metric; last.ckpt
    <run>/tensorboard/            event files (scalars, images, hparams)

A run is finished exactly when run.json says so; metrics.json is written before that status, so
a crash between the two leaves a run that still says "running" rather than a finished-looking one.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
CONFIG_FILE = Path(".hydra") / "config.yaml"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
CHECKPOINT_DIR = "checkpoints"
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
    """Keeps run.json up to date for one run folder."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / RUN_FILE
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

    def finish(self, metrics: dict) -> None:
        write_json_atomic(self.run_dir / METRICS_FILE, metrics)
        self.end("finished")

    def end(self, status: str, error: str | None = None) -> None:
        assert status in STATUSES, status
        self.data.update(status=status, end_time=_now(), error=error)
        self._write()

    def _write(self) -> None:
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
