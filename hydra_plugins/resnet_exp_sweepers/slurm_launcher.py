"""hydra-submitit-launcher's SLURM launcher (conf/hydra/launcher/slurm.yaml), asking the
scheduler for its jobs' states where the cluster keeps no accounting database.

submitit learns how a job ended from `sacct`. Without accounting (`AccountingStorageType=none`,
common on small clusters) every call fails: each printed sacct's "Slurm accounting storage is
disabled" and submitit's "Bypassing sacct error" warning, twice (its handler and Hydra's), every
few seconds for as long as the sweep waited, and a job that died without writing its result
(scancel, out of memory, a lost node) was never seen to end: the sweep waited forever. Here the
first status check asks sacct once, quietly; where it fails, jobs' states come from `squeue
--states=all`, which knows a job until `MinJobAge` after its end (300 s by default), and the sweep
says so in one line.

A job that ends without a result (scancel, a lost node, the time limit without a requeue) made
submitit raise `UncompletedJobError` while the launcher collected the sweep's results: the sweep
died with its traceback, no table, and the other jobs' results were never collected. Here such
a job returns what a failed job returns (`results_or_failed`): the sweep goes on, and its table
shows the job as its run.json says (`interrupted`, for a SIGTERM, with the command that resumes
it).

Lives under `hydra_plugins/` because Hydra instantiates launchers from that package only.
"""

from __future__ import annotations

import functools
import logging
import math
import subprocess
import sys

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from submitit.core.utils import UncompletedJobError
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob


class SchedulerStates(SlurmInfoWatcher):
    """submitit's job-state watcher (1.5.4), with `squeue` standing in for a failing `sacct`."""

    SQUEUE_HEADER = "JOBID|STATE|NODELIST"

    def __init__(self, delay_s: int = 60) -> None:
        super().__init__(delay_s=delay_s)
        self.accounting: bool | None = None  # unknown until the first check

    def _make_command(self) -> list[str] | None:
        command = super()._make_command()  # sacct ... -j ID -j ID, None when nothing to ask
        if command is None:
            return None
        if self.accounting is None:
            probe = subprocess.run(["sacct", "--noheader", "--starttime=now"],
                                   capture_output=True, text=True)
            self.accounting = probe.returncode == 0
            if not self.accounting:
                why = (probe.stderr.strip().splitlines() or ["sacct failed"])[0]
                print(f"submitit: {why}: job states come from squeue", file=sys.stderr,
                      flush=True)
        if self.accounting:
            return command
        ids = [command[i + 1] for i, arg in enumerate(command) if arg == "-j"]
        return ["squeue", "--states=all", "--format=%i|%T|%N", f"--jobs={','.join(ids)}"]

    def read_info(self, string: bytes | str) -> dict:
        text = string.decode() if isinstance(string, bytes) else string
        if text.startswith(self.SQUEUE_HEADER):  # squeue's names for sacct's columns
            text = "JobID|State|NodeList" + text[len(self.SQUEUE_HEADER):]
        return super().read_info(text)


_RESULTS = SlurmJob.results  # submitit's: raises for a job that ended without a result


def results_or_failed(job: SlurmJob, records_errors: bool) -> list:
    """submitit's `SlurmJob.results`, but for a job that ended without a result, a failed job's:
    NaN for Hydra's basic sweeper (as `resnet_exp.__main__` returns for a failed run), the error
    for a sweeper that records it (`records_errors`: the Optuna sweeper, a FAIL trial). Set on
    the class (as the watcher): submitit makes an array's jobs as `SlurmJob`s, not of its
    executor's `job_class`."""
    try:
        return _RESULTS(job)
    except UncompletedJobError as e:
        # its first lines: "Job 12_3 (task: 0) with path ... has not produced any output
        # (state: CANCELLED)"; the job's own stderr, in its SLURM log, says the rest
        error = RuntimeError(" ".join(str(e).splitlines()[:2]))
        print(f"submitit: {error}", file=sys.stderr, flush=True)
        if records_errors:
            return [JobReturn(status=JobStatus.FAILED, _return_value=error)]
        return [JobReturn(status=JobStatus.COMPLETED, _return_value=math.nan)]


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """hydra-submitit-launcher's SlurmLauncher whose jobs' states come from `SchedulerStates`
    and whose jobs without a result are failed jobs (`results_or_failed`)."""

    def launch(self, job_overrides, initial_job_idx):
        from resnet_exp.__main__ import records_job_errors

        if not isinstance(SlurmJob.watcher, SchedulerStates):  # a class attribute, read at poll
            SlurmJob.watcher = SchedulerStates(delay_s=SlurmJob.watcher._delay_s)
        SlurmJob.results = functools.partialmethod(results_or_failed, records_errors=(
            records_job_errors(self.config.hydra.sweeper.get("_target_"))))
        # a job whose squeue call failed (its id already forgotten) is retried at the next poll
        logging.getLogger("submitit").addFilter(_once)
        return super().launch(job_overrides, initial_job_idx)


def _once(record: logging.LogRecord) -> bool:
    """Let the first "Bypassing sacct error" through and no other: the next calls say the same."""
    if "Bypassing sacct error" not in str(record.msg):
        return True
    seen = getattr(_once, "seen", False)
    _once.seen = True
    return not seen
