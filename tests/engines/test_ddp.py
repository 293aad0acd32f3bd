"""Two-process DDP on the CPU (gloo), on the machine where `make test-engines` installed SLURM:
every rank's output is read (the exit status is rank 0's alone), and a run killed mid-epoch
resumes to the metrics of its uninterrupted twin. (tests/test_sweeps.py checks what each rank
samples and logs.)"""

from __future__ import annotations

import pytest
from conftest import TESTS_ON_PATH, run_cli

from resnet_exp import runs
from resnet_exp.runs import read

pytestmark = [pytest.mark.engines, pytest.mark.slow]

DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=2",
       "trainer.num_sanity_val_steps=0", "+trainer.limit_train_batches=3",
       "+trainer.limit_val_batches=2", "+trainer.limit_test_batches=2", "callbacks=lean",
       "deterministic=true", "logger=[tensorboard,csv]"]
# Lightning's hint about srun on a machine with SLURM installed is kept off local runs
NOISE = ("Traceback", "Error executing job", "error:", "`srun` command is available")


def kill_at(epoch: int) -> list[str]:
    """A SIGKILL each rank sends itself at training batch 1 of `epoch` (-1: never): a lost
    node, an out-of-memory kill. (Lightning 2.6 broadcasts a SIGTERM to DDP ranks from inside
    its signal handler: the run ends cleanly or in a gloo error depending on where the other
    rank is when it lands, and a test may not depend on when a signal arrives.)"""
    return ["+callbacks.signal_at._target_=signal_at.SignalAt",
            "+callbacks.signal_at.signal=SIGKILL", f"+callbacks.signal_at.epoch={epoch}",
            "+callbacks.signal_at.batch=1"]


def outputs(result, run) -> dict[str, str]:
    """What every rank printed: rank 1 writes to the same stdout and stderr, and logs to its own
    file in the run folder (Lightning re-runs the command with hydra.job.name changed)."""
    logs = {path.name: path.read_text() for path in run.glob("*.log")}
    assert set(logs) == {"__main__.log", "train_ddp_process_1.log"}, set(logs)
    return {"stdout": result.stdout, "stderr": result.stderr, **logs}


def without_timings(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith("time")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("ddp")
    result = run_cli([*DDP, *kill_at(-1)], cwd, env=TESTS_ON_PATH)
    (run,) = (cwd / "outputs" / "runs").iterdir()  # one run folder, rank 0's
    return result, run


def test_every_rank_ends_without_an_error(uninterrupted):
    result, run = uninterrupted
    assert result.returncode == 0, result.stderr[-3000:]
    for name, text in outputs(result, run).items():
        assert not any(n in text for n in NOISE), (name, text[-3000:])
    info = read.read_json(run / runs.RUN_FILE)
    assert info["status"] == "finished" and info["world_size"] == 2
    assert result.stdout.count(": finished") == 1  # the summary, printed by rank 0 alone


def test_killed_run_resumes_to_its_twins_metrics(tmp_path, uninterrupted):
    killed = run_cli([*DDP, *kill_at(1)], tmp_path, env=TESTS_ON_PATH)
    assert killed.returncode == -9, killed.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "runs").iterdir()
    assert read.read_json(run / runs.RUN_FILE)["status"] == "running"  # never recorded an end
    assert (run / runs.CHECKPOINT_DIR / "last.ckpt").is_file()  # epoch 1's

    # the test's callback is no framework code: resuming it needs --trust
    resumed = run_cli([f"resume={run}", "--trust", "callbacks.signal_at.epoch=-1"], tmp_path,
                      env=TESTS_ON_PATH)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name, text in outputs(resumed, run).items():
        assert not any(n in text for n in NOISE), (name, text[-3000:])
    twin = read.read_json(uninterrupted[1] / runs.METRICS_FILE)
    assert without_timings(read.read_json(run / runs.METRICS_FILE)) == without_timings(twin)
