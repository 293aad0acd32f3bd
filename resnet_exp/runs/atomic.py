"""Writing a file whole or not at all.

`atomic_write` is the one way this package writes a file that someone may read while it is being
written (run.json, metrics.json, checkpoints, gradient_flow.csv): a temporary file in the same
folder, fsynced, renamed over the target (atomic on POSIX), then the folder fsynced so that the
rename survives a power cut. Readers see the old file or the new one, never half of one. A Ctrl-C
or SIGTERM that arrives while the file is written waits until it is in place: raised inside
torch.save's C++ writer, it aborted the process (exit 134) and left the temporary file behind.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from resnet_exp.core.errors import UserError


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
        with signals_deferred(), os.fdopen(fd, "wb" if binary else "w",
                                           **({} if binary else {"newline": ""})) as f:
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


@contextmanager
def signals_deferred(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Within the block, `signals` are noted, not acted on; after it, the first one noted goes
    to the handler that was set before (Ctrl-C's KeyboardInterrupt, the run's SIGTERM exit).
    Signals reach Python's main thread only: elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    before = {s: signal.signal(s, lambda signum, frame: noted.append(signum)) for s in signals}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        if noted and callable(before[noted[0]]):
            before[noted[0]](noted[0], None)
        elif noted and before[noted[0]] == signal.SIG_DFL:
            signal.raise_signal(noted[0])
