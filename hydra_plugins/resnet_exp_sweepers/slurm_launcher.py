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

Lives under `hydra_plugins/` because Hydra instantiates launchers from that package only.
"""

from __future__ import annotations

import logging
import subprocess
import sys

from hydra_plugins.hydra_submitit_launcher import submitit_launcher
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


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """hydra-submitit-launcher's SlurmLauncher whose jobs' states come from `SchedulerStates`."""

    def launch(self, job_overrides, initial_job_idx):
        if not isinstance(SlurmJob.watcher, SchedulerStates):  # a class attribute, read at poll
            SlurmJob.watcher = SchedulerStates(delay_s=SlurmJob.watcher._delay_s)
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
