"""A SIGTERM to a sweep reaches every job it runs in a process of its own (joblib here): each
job records `interrupted` and ends, the sweep exits with 143, and no job trains on as an orphan.
The signal is sent from inside a job, once both jobs are training (a rendezvous), so the test
never depends on when a signal sent from outside happens to arrive."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import psutil
import pytest
from conftest import TESTS_ON_PATH, job_dirs, run_cli
from test_sweeps import meeting


@pytest.mark.slow
def test_a_sigterm_to_a_joblib_sweep_interrupts_each_job_and_leaves_no_orphan(tmp_path):
    address = Path(tempfile.mkdtemp(prefix="meet")) / "socket"  # a UNIX socket: <= 107 bytes
    pids = meeting(address, jobs=2)
    result = run_cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer=smoke",
                      "callbacks=lean", "trainer.max_epochs=100000", "seed=1,2",
                      "hydra.sweep.dir=sweep",
                      "+callbacks.rendezvous._target_=test_sweeps.Rendezvous",
                      f"+callbacks.rendezvous.address={address}",
                      "+callbacks.term._target_=signal_at.SignalParentAt",
                      "+callbacks.term.signal=SIGTERM", "+callbacks.term.epoch=1",
                      "+callbacks.term.batch=0", "+callbacks.term.seed=${seed}",
                      "+callbacks.term.only_seed=1"], tmp_path, timeout=600, env=TESTS_ON_PATH)
    shutil.rmtree(address.parent)
    assert result.returncode == 143, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    jobs = job_dirs(tmp_path / "sweep")
    assert [json.loads((job / "run.json").read_text())["status"] for job in jobs] == [
        "interrupted", "interrupted"]
    assert len(pids) == 2
    assert not [pid for pid in map(int, pids) if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
