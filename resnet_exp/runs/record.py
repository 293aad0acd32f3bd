"""run.json and metrics.json: what a run records about itself, always written atomically.

`atomic_write` is the one way this package writes a file that someone may read while it is being
written (run.json, metrics.json, checkpoints, gradient_flow.csv): a temporary file in the same
folder, fsynced, renamed over the target (atomic on POSIX), then the folder fsynced so that the
rename survives a power cut. Readers see the old file or the new one, never half of one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from resnet_exp.errors import UserError
from resnet_exp.runs import METRICS_FILE, RUN_FILE, STATUSES
from resnet_exp.runs.read import read_json

_PACKAGES = (
    "resnet-exp", "torch", "torchvision", "pytorch-lightning", "torchmetrics", "hydra-core",
    "omegaconf", "numpy", "tensorboard",
)


class WriteFailed(UserError, OSError):
    """A file of the run could not be written: a UserError with the message, an OSError still
    for code that handles failed writes."""


def write_error(path: Path, error: OSError,
                needed: Callable[[], int] | None = None) -> WriteFailed:
    """An OSError of a write as one line: which file, why, and what to do about it; `needed`
    gives the file's size in bytes, asked only for a full disk."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f"{shutil.disk_usage(path.parent).free / 2**20:,.1f} MiB free"
        except OSError:
            free = "free space unknown"
        size = f"; this file needs about {needed() / 2**20:,.1f} MiB" if needed else ""
        return WriteFailed(
            f"no space left on the device holding {path.parent} ({free}{size}): free some space, "
            "or write runs elsewhere with hydra.run.dir=... (hydra.sweep.dir=... for a sweep)"
        )
    return WriteFailed(
        f"cannot write {path} ({error.strerror or error}): the output folder must be a writable "
        "folder; choose another with hydra.run.dir=... (hydra.sweep.dir=... for a sweep)"
    )


def _os_error(error: BaseException, path: Path,
              needed: Callable[[], int] | None) -> OSError | None:
    """The OSError behind a failed write: `error` or one in its cause chain; or, for the
    RuntimeError that torch's zip writer raises on a full disk without an errno ("[enforce fail
    at inline_container.cc]"), ENOSPC when the device has less room left than the file needs."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError):
            return cause
        cause = cause.__cause__ or cause.__context__
    if not isinstance(error, RuntimeError):
        return None
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return None
    return OSError(errno.ENOSPC, "No space left on device") if free < (
        needed() if needed else 2**20) else None


def atomic_write(path: Path | str, write: Callable[[IO], None], binary: bool = False,
                 needed: Callable[[], int] | None = None) -> None:
    """Call `write(file)` on a temporary file beside `path`, fsync, rename it over `path`, fsync
    the folder. An OSError (a full disk, a read-only folder) becomes a UserError naming the file;
    `needed()` gives the expected size in bytes, for that message."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise write_error(path, e, needed) from e
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from the rest of a team
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        os_error = _os_error(e, path, needed)  # before the unlink gives the space back
        Path(tmp).unlink(missing_ok=True)
        if os_error is not None:
            raise write_error(path, os_error, needed) from e
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename has happened


def write_json_atomic(path: Path, data: Any) -> None:
    def dump(f) -> None:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.write("\n")

    atomic_write(path, dump)


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
        self.data.update(
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
