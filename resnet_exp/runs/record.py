"""run.json and metrics.json: what a run records about itself, always written atomically
(runs/atomic.py), and the lock that tells a live run from one whose process died."""

from __future__ import annotations

import fcntl
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from resnet_exp.core.errors import UserError
from resnet_exp.runs import LAYOUT, METRICS_FILE, RUN_FILE, STATUSES, migrate
from resnet_exp.runs.atomic import write_json_atomic
from resnet_exp.runs.read import read_json

_PACKAGES = (
    "resnet-exp", "torch", "torchvision", "pytorch-lightning", "torchmetrics", "hydra-core",
    "omegaconf", "numpy", "tensorboard",
)


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
        self.data: dict = _readable(self.path)

    def start(self, seed: int | None, extra: dict | None = None) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # a run started before (now resumed) keeps its layout: its .hydra/ and earlier events
        # stay as that layout's code wrote them
        started = "start_time" in self.data
        self.data.update(
            layout=migrate.layout(self.data, self.path) if started else LAYOUT,
            status="running",
            start_time=_now(),
            end_time=None,
            error=None,
            seed=seed,
            command=[Path(sys.argv[0]).name, *sys.argv[1:]],
            cwd=os.getcwd(),
            host=socket.gethostname(),
            pid=os.getpid(),
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

    def finish(self, metrics: dict, status: str = "finished") -> None:
        """`status`: finished, or pruned (an Optuna search's pruner stopped the run early)."""
        if self.write:
            write_json_atomic(self.run_dir / METRICS_FILE, metrics)
        self.end(status)

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


@contextmanager
def lock(run_dir: Path, write: bool = True) -> Iterator[None]:
    """Hold the run folder for this process alone (an OS lock, released when the block or the
    process ends, however it ends): a second writer, such as `resume=` of a run that is still
    training, is refused with one line naming the process that holds it. `write` False: a DDP
    rank that does not write holds nothing."""
    if not write:
        yield
        return
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        holder = _readable(Path(run_dir) / RUN_FILE)
        raise UserError(
            f"{run_dir} is being written by process {holder.get('pid', '?')} on "
            f"{holder.get('host', '?')} (started {holder.get('start_time', '?')}): a run "
            "folder has one writer. Wait for that run to end, or stop it, then resume"
        ) from None
    try:
        yield
    finally:
        os.close(fd)


@contextmanager
def held(run_dir: Path) -> Iterator[bool]:
    """Whether `lock` is free: True, and the folder held by this process for the block, when no
    process writes in it (a `running` run whose process died: the OS released its lock); False
    while a run holds it. `runs clean` deletes a folder only inside this block, so that a run
    cannot start writing there meanwhile."""
    try:
        fd = os.open(run_dir, os.O_RDONLY)
    except OSError:  # gone, or not ours to read: nothing that this process may take
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        free = True
    except OSError:
        free = False
    try:
        yield free
    finally:
        os.close(fd)


def _readable(path: Path) -> dict:
    """run.json's fields; {} when it is missing, empty (a folder just claimed) or damaged (a
    truncated file is rewritten whole at the next write)."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def note(run_dir: Path, **fields: Any) -> None:
    """Add fields to a run's run.json, keeping the rest (RunRecord.start keeps them too)."""
    path = Path(run_dir) / RUN_FILE
    data = _readable(path)
    data.update(fields)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, data)
