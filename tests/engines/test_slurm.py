"""Sweeps through `hydra/launcher=slurm` on the real one-node SLURM that `make test-engines`
starts (scripts/engines.sh: slurm-wlm 22.05, cons_tres, no accounting database): the jobs run
under slurmd, srun starts their tasks, submitit pickles and unpickles them, and the sweep learns
their states from the scheduler. Every job's SLURM log (each task's stdout and stderr) is read."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import ONE_THREAD, TESTS_ON_PATH, job_dir, run_cli

from engines.probes import HELD
from resnet_exp import runs
from resnet_exp.runs import read

pytestmark = [pytest.mark.engines, pytest.mark.slow]

# what a CPU-only test cluster can give: no GPU, one core and 2 GB a task
SLURM = ["-m", "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2"]
# a short run that still prints its plain line per epoch into the job's log
SHORT = ["trainer=smoke", "trainer.max_epochs=2", "callbacks=lean",
         "callbacks.progress_bar.quiet=false"]
NOISE = ("Traceback", "Error executing job", "`srun` command is available")


def the_sweep(cwd: Path) -> Path:
    (sweep,) = (cwd / "outputs" / "multirun").iterdir()
    return sweep


def task_logs(sweep: Path, job: int) -> dict[str, str]:
    """Job `job`'s SLURM logs, by name: `<array id>_<job>_<task>_log.out/.err`, one pair a task
    (submitit's `%A_%a` folders of an array; a single job's folder is its id)."""
    folders = [p for p in (sweep / ".submitit").iterdir()
               if p.name.isdigit() or p.name.split("_")[-1] == str(job)]
    return {log.name: log.read_text() for folder in folders for log in folder.glob("*_log.*")}


def epoch_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"epoch \d+/\d+ ", line)]


def quiet_about_sacct(result) -> None:
    """No accounting database: said once (scontrol's reason), never per status check."""
    both = result.stdout + result.stderr
    assert both.count("Bypassing sacct error") <= 1, result.stderr[-3000:]
    assert both.count("accounting storage is disabled") <= 1, result.stderr[-3000:]


def test_two_job_sweep_lists_both_and_the_failed_ones_error(tmp_path):
    # the issue's command, with seed 2's job failing at its second epoch (a planted error)
    result = run_cli([*SLURM, "resume=true", "seed=1,2", *SHORT,
                      "+callbacks.fail._target_=engines.probes.FailAt", "+callbacks.fail.epoch=1",
                      "+callbacks.fail.seed=${seed}", "+callbacks.fail.only_seed=2"],
                     tmp_path, timeout=600, env=TESTS_ON_PATH)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = the_sweep(tmp_path)
    assert "2 jobs in" in result.stdout
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines()
            if line.startswith("│")}
    assert [name.split("_")[0] for name in rows] == ["0", "1"], result.stdout
    finished, failed = rows.values()
    assert "finished" in finished and "failed" in failed, result.stdout
    # the failed job's error, under the table, with its folder
    assert re.search(r"job 1 failed: RuntimeError: planted failure at the start of epoch 1\n"
                     r"\s+\S+/1_\S*seed=2\S*\n", result.stdout), result.stdout
    quiet_about_sacct(result)

    logs = task_logs(sweep, 0)
    out = "".join(text for name, text in logs.items() if name.endswith(".out"))
    # one plain line per epoch: no bar redraws, no carriage returns
    assert [line.split()[1] for line in epoch_lines(out)] == ["1/2", "2/2"], out[-3000:]
    assert "\r" not in out
    for name, text in logs.items():
        assert not any(n in text for n in NOISE), (name, text[-3000:])
    assert [line.split()[1] for line in epoch_lines(
        "".join(t for n, t in task_logs(sweep, 1).items() if n.endswith(".out")))] == ["1/2"]


def scontrol(*args: str) -> str:
    return subprocess.run(["scontrol", *args], capture_output=True, text=True, check=True).stdout


@contextmanager
def held_sweep(args: list[str], cwd: Path):
    """The sweep `python -m resnet_exp ARGS` in the background (run_cli's environment), until
    its job 0 holds still (probes.HoldForRequeue): yields the process and that job's run folder
    for the test to act on; the process is killed if the test leaves it running."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", **ONE_THREAD, **TESTS_ON_PATH}
    process = subprocess.Popen([sys.executable, "-m", "resnet_exp", *args], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        held = None
        for _ in range(1200):  # a bound of 10 minutes for a job that never gets there
            found = list((cwd / "outputs" / "multirun").glob(f"*/0_*/{HELD}"))
            if found or process.poll() is not None:
                held = found[0] if found else None
                break
            time.sleep(0.5)
        assert held is not None, "job 0 never reached its second epoch"
        yield process, held.parent
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_requeued_job_resumes_and_matches_its_uninterrupted_twin(tmp_path):
    # Two jobs of the same seed; job 0 holds still at the start of its second epoch (its
    # last.ckpt holds the first) until `scontrol requeue` stops it. The requeued job runs the
    # same command, resume=true finds its folder and continues from last.ckpt; job 1 runs
    # uninterrupted beside it.
    args = [*SLURM, "resume=true", "seed=1,1", "trainer=smoke", "trainer.max_epochs=3",
            "deterministic=true", "callbacks=lean",
            "+callbacks.hold._target_=engines.probes.HoldForRequeue",
            "+callbacks.hold.run_dir=${hydra:runtime.output_dir}", "+callbacks.hold.epoch=1",
            "+callbacks.hold.job=${hydra:job.num}", "+callbacks.hold.only_job=0"]
    with held_sweep(args, tmp_path) as (sweep_process, run):
        assert read.read_json(run / runs.RUN_FILE)["status"] == "running"
        assert (run / runs.CHECKPOINT_DIR / "last.ckpt").is_file()  # epoch 1's, to resume from
        (array,) = {p.name.split("_")[0] for p in (run.parent / ".submitit").glob("[0-9]*")}
        requeued_at = time.time()
        scontrol("requeue", f"{array}_0")
        stdout, stderr = sweep_process.communicate(timeout=600)
    assert sweep_process.returncode == 0, stderr[-3000:]
    assert "Restarts=1" in scontrol("show", "job", f"{array}_0")
    sweep = run.parent
    first, twin = job_dir(sweep, 0), job_dir(sweep, 1)
    assert [read.read_json(j / runs.RUN_FILE)["status"] for j in (first, twin)] == [
        "finished", "finished"], stdout
    resumed_metrics = read.read_json(first / runs.METRICS_FILE)
    twin_metrics = read.read_json(twin / runs.METRICS_FILE)
    timings = [k for k in twin_metrics if k.startswith("time")]
    for metrics in (resumed_metrics, twin_metrics):
        for key in timings:
            metrics.pop(key, None)
    assert resumed_metrics["epochs"] == 3
    assert resumed_metrics == twin_metrics
    # measured for docs/scaling.md: from the requeue to the resumed run's end
    print(f"requeue to the resumed job's end: {time.time() - requeued_at:.0f} s")


def test_a_cancelled_job_is_recorded_interrupted_and_the_sweep_again_finishes_it(tmp_path):
    # `scancel` (a user's, or a node going down) signals the job's steps with SIGTERM, SIGKILL
    # after KillWait: the run stops at its next batch, records `interrupted` with its last.ckpt,
    # and the same sweep command with resume=true continues it
    hold = {"_target_": "engines.probes.HoldForRequeue", "run_dir": "${hydra:runtime.output_dir}",
            "epoch": 1, "job": "${hydra:job.num}", "only_job": 0}
    # the same job folder name without the probe: its keys are left out of the name
    unnamed = ",".join(["resume", "name", "tags", "extras.print_config",
                        *(f"callbacks.hold.{k}" for k in hold)])
    same = [*SLURM, "resume=true", "seed=1", "trainer=smoke", "trainer.max_epochs=3",
            "deterministic=true", "callbacks=lean",
            f"hydra.job.config.override_dirname.exclude_keys=[{unnamed}]"]
    args = [*same, *(f"+callbacks.hold.{k}={v}" for k, v in hold.items())]
    with held_sweep(args, tmp_path) as (sweep_process, run):
        # submitit's folder of the job: `<id>` (a sweep of one job is no array), or `<id>_0`
        (job,) = [p.name for p in (run.parent / ".submitit").glob("[0-9]*")]
        subprocess.run(["scancel", job], check=True)
        stdout, stderr = sweep_process.communicate(timeout=600)
    info = read.read_json(run / runs.RUN_FILE)
    assert info["status"] == "interrupted", (info, stdout[-3000:], stderr[-3000:])
    assert (run / runs.CHECKPOINT_DIR / "last.ckpt").is_file()
    # the sweep collected every job and ended with its table (submitit raised, before)
    assert sweep_process.returncode == 0, stderr[-3000:]
    assert re.search(r"^│\s+0 │ interrupted ", stdout, re.M), stdout
    assert "state: CANCELLED" in stderr and "Traceback" not in stdout + stderr, stderr[-3000:]
    quiet_about_sacct(subprocess.CompletedProcess(args, 0, stdout, stderr))

    # the same command again (what a user does after the cancel): the job continues its run
    again = run_cli([*same, f"hydra.sweep.dir={run.parent}"], tmp_path, timeout=600,
                    env=TESTS_ON_PATH)
    assert again.returncode == 0, again.stderr[-3000:]
    info = read.read_json(run / runs.RUN_FILE)
    assert info["status"] == "finished" and info["resumed"], info
    assert read.read_json(run / runs.METRICS_FILE)["epochs"] == 3


def test_ddp_through_the_slurm_launcher(tmp_path):
    # srun starts both ranks (--ntasks-per-node=2); Lightning must not start them again
    result = run_cli([*SLURM, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                      "trainer.max_epochs=2", "trainer.num_sanity_val_steps=0",
                      "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2",
                      "+trainer.limit_test_batches=2", "callbacks=lean",
                      "callbacks.progress_bar.quiet=false"], tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    quiet_about_sacct(result)
    sweep = the_sweep(tmp_path)
    (run,) = read.find_runs(sweep)  # one run folder, rank 0's
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["multirun"]
    info = read.read_json(run / runs.RUN_FILE)
    assert info["status"] == "finished", info.get("error")
    assert (info["world_size"], info["effective_batch_size"]) == (2, 2 * 64)
    logs = task_logs(sweep, 0)
    # srun's two tasks, each with its own stdout and stderr
    assert sorted(name.rsplit("_", 3)[-2] + name[-4:] for name in logs) == [
        "0.err", "0.out", "1.err", "1.out"], logs.keys()
    for name, text in logs.items():
        assert not any(n in text for n in NOISE), (name, text[-3000:])
    rank0, rank1 = (next(t for n, t in logs.items() if n.endswith(f"_{r}_log.out"))
                    for r in (0, 1))
    assert len(epoch_lines(rank0)) == 2 and not epoch_lines(rank1)  # printed by rank 0 alone
