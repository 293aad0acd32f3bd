"""The Hydra callbacks (conf/hydra/default.yaml, `hydra.callbacks`): they run in the process that
Hydra starts, around the jobs, whichever launcher or sweeper runs them.

- `ClaimOutputFolder`: before the first job, Hydra's run (or sweep) folder is created, written
  and claimed. A folder that cannot be written (read-only, under a file, no space left) stops the
  command with one line naming the folder and the fix, instead of Hydra's traceback from deep
  inside its job runner or, worse, a run that trains and then cannot save. A folder that holds a
  run already is never written into (only `resume=` continues a run): the default folder, named
  by the clock, moves to `<folder>_2`; one given with hydra.run.dir is refused.
- `SweepSummary`: once every job of a sweep has returned (an Optuna search with failed trials
  too), one table of the jobs: status, swept values, the objective and test accuracy
  (sweep_table.py). It reads what the jobs left in their folders (compare.py), so a job that
  ran on a SLURM node shows up the same as a local one.
"""

from __future__ import annotations

import errno
import itertools
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, read_write

from resnet_exp.core.config import check_run_settings, monitor_mode, override_key
from resnet_exp.core.errors import UserError, report_error
from resnet_exp.runs import RUN_FILE, SWEEP_FILE, read
from resnet_exp.runs.context import resolving_as_run


def check_writable(folder: Path, key: str) -> str | None:
    """None when `folder` can be created and written, else the message saying why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        reason = "no space left on the device" if e.errno == errno.ENOSPC else e.strerror or e
        return (f"cannot write to the output folder {folder} ({reason}): choose a writable one "
                f"with {key}=...")
    return None


def _rank() -> int:
    """This process's rank in a multi-process job: Lightning's launcher re-runs the command for
    ranks 1.. with the same run folder (LOCAL_RANK), torchrun sets RANK."""
    return max(int(os.environ.get(name, "0") or 0) for name in ("RANK", "LOCAL_RANK"))


def claim(folder: Path, marker: str, explicit: bool, key: str) -> Path:
    """Make `folder` this command's own: create `marker` in it exclusively (O_EXCL: of two
    commands started in the same second, one wins). Taken already, an explicit folder is refused;
    a default one (named by the clock) takes the first free `<folder>_2`, `_3`, ..."""
    for i in itertools.count(1):
        candidate = folder if i == 1 else folder.with_name(f"{folder.name}_{i}")
        problem = check_writable(candidate, key)
        if problem:
            raise UserError(problem)
        try:
            os.close(os.open(candidate / marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return candidate
        except FileExistsError:
            if explicit:
                sweep = marker == SWEEP_FILE
                what = ("a sweep already" if sweep else
                        f"a run already (status: {read.run_status(candidate) or 'unknown'})")
                again = "the same sweep command with resume=true" if sweep else \
                    f"resume={candidate}"
                raise UserError(
                    f"{key}={candidate} holds {what}: nothing there is overwritten. To continue "
                    f"it: {again}; to start anew, choose another folder or leave {key} at its "
                    "default") from None


def _check_creatable(folder: Path) -> None:
    """The nearest existing folder on the way to `folder` is a folder that can be written,
    checked without creating anything (claim() then makes the folder and writes a file in it)."""
    existing = next(p for p in (folder.resolve(), *folder.resolve().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UserError(f"cannot write to the output folder {folder} ({existing} is not a "
                        "writable folder): choose a writable one with hydra.run.dir=...")


def _check_name(config: DictConfig) -> None:
    name = str(config.get("name"))
    if "/" in name or "\\" in name or name.startswith("."):
        raise UserError(f"name={name}: a run's name becomes its folder name, so it may not "
                        "contain / or \\ or start with a dot; use letters, digits, - and _")


def _check_arguments(config: DictConfig) -> None:
    """Every node the run builds, against its target's signature (resnet_exp/core/signatures.py), as
    the run will resolve it: in its folder, which Hydra sets only once the job runs."""
    from resnet_exp.core import signatures  # imports what the config names: torch

    with resolving_as_run(config, Path(config.hydra.run.dir).resolve()) as probe:
        signatures.check_config(probe)


def _given(config: DictConfig, key: str) -> bool:
    return any(override_key(o) == key for o in config.hydra.overrides.hydra)


class ClaimOutputFolder(Callback):
    """Before the first job: the run (or sweep) folder is created, can be written, and belongs to
    this command alone; `name` may not lead out of the runs folder."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        HydraConfig.instance().set_config(config)  # run.dir interpolates ${hydra:...} (name)
        try:  # a wrong setting (seed=abc, augmentation.flip=yes) leaves no run folder behind
            check_run_settings(config)
            _check_name(config)
            _check_creatable(Path(config.hydra.run.dir))  # before torch loads below: 1 s, not 5
            _check_arguments(config)
        except UserError as e:
            sys.exit(report_error(e))
        self._claim(config, config.hydra.run, "hydra.run.dir", RUN_FILE)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        HydraConfig.instance().set_config(config)  # `name` interpolates ${hydra:...}
        self._claim(config, config.hydra.sweep, "hydra.sweep.dir", SWEEP_FILE)

    @staticmethod
    def _claim(config: DictConfig, node: DictConfig, key: str, marker: str) -> None:
        try:
            _check_name(config)
            folder = Path(node.dir)
            if config.get("resume") or _rank() > 0:  # continues, or joins, a folder on purpose
                problem = check_writable(folder, key)
                if problem:
                    raise UserError(problem)
                return
            claimed = claim(folder, marker, _given(config, key), key)
        except UserError as e:
            # SystemExit passes through Hydra's callback runner, which turns exceptions into
            # warnings; status 2 as for every error the user can fix
            sys.exit(report_error(e))
        with read_write(node):
            node.dir = str(claimed)


class SweepSummary(Callback):
    """Prints `sweep_table` when a multirun ends."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        # The Optuna sweeper opens its study in <sweep>/optuna.db before any job has created
        # the folder (sqlite cannot create the folder of its file).
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from resnet_exp.core.console import console
        from resnet_exp.runs.sweep_table import print_sweep

        monitor = config.get("monitor", "val/acc")
        print_sweep(console, Path(config.hydra.sweep.dir), monitor,
                    config.get("monitor_mode") or monitor_mode(monitor))


class ForwardSignals(Callback):
    """A SIGTERM to a sweep (a scheduler's, `kill`, `timeout`) reaches each of its jobs: the
    joblib and submitit-local launchers run them in processes of their own, which went on
    training as orphans when the sweep's process died. Each job records `interrupted` and stops
    (callbacks/guards.py); once no job of the sweep is running (or after `grace_s`), the worker
    processes left idle are ended, and the sweep exits with 143."""

    def __init__(self, grace_s: float = 120.0) -> None:
        self.grace_s, self.previous, self.sweep_dir = grace_s, None, None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.sweep_dir = Path(config.hydra.sweep.dir)
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self.forward)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)

    def _jobs_running(self) -> bool:
        return any(read.run_status(job) == "running" for job in read.find_runs(self.sweep_dir))

    def forward(self, signum: int, frame) -> None:
        import psutil

        signal.signal(signum, signal.SIG_IGN)  # a second signal while the jobs save: no effect
        # not loky's resource tracker (joblib): killed while the workers stop, it printed
        # KeyError tracebacks and "died unexpectedly"; it ends by itself with the sweep
        workers = [p for p in psutil.Process().children(recursive=True) if not _tracker(p)]
        _send(workers, signum)
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline and self._jobs_running():
            _, left = psutil.wait_procs(workers, timeout=0.5)
            if not left:
                break
        _, idle = psutil.wait_procs(_send(workers, signal.SIGTERM), timeout=5)
        _send(idle, signal.SIGKILL)
        raise SystemExit(128 + signum)


def _tracker(process) -> bool:
    import psutil

    try:
        return any("resource_tracker" in part for part in process.cmdline())
    except psutil.Error:  # ended meanwhile, or not ours to read
        return False


def _send(processes: list, signum: int) -> list:
    """`signum` to each of `processes` still there; returns those."""
    import psutil

    alive = []
    for process in processes:
        try:
            process.send_signal(signum)
            alive.append(process)
        except psutil.NoSuchProcess:  # ended meanwhile
            pass
    return alive
