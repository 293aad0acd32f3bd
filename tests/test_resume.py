"""Resume: a run killed with real signals at several points and resumed ends exactly like its
uninterrupted twin (CPU, deterministic=true): same metrics.json, same TensorBoard curves with no
duplicate steps. Each run sends its signal to itself at a known batch (tests/signal_at.py), so
no outcome depends on when a signal sent from outside would arrive."""

from __future__ import annotations

import functools
import json
import os
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import signal_at
import torch
from conftest import TESTS_ON_PATH, job_dir, job_dirs, run_cli

# ResNet-20 on the digits with crop and flip, 3 epochs of 6 batches; the figure callbacks only
# cost time here.
EPOCHS, BATCHES = 3, 6
ARGS = [f"trainer.max_epochs={EPOCHS}", "trainer=smoke", f"trainer.limit_train_batches={BATCHES}",
        "deterministic=true", "augmentation=standard", "callbacks=lean"]
TIMEOUT = 300
NEVER = signal_at.overrides("SIGTERM", epoch=-1, batch=0)


def comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every TensorBoard scalar as (step, value) pairs, as TensorBoard shows them: events that a
    resumed run logged again are purged (SummaryWriter purge_step), so duplicates would show."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard")).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"] if "time/" not in tag}


def interrupted(args: list[str], cwd: Path) -> int:
    """`python -m resnet_exp ARGS`, whose SignalAt callback ends it; returns the exit status."""
    result = run_cli(args, cwd, timeout=TIMEOUT, env=TESTS_ON_PATH)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.returncode


def at(signal_name: str, epoch: int, batch: int) -> list[str]:
    """A resume's overrides moving the saved SignalAt to another signal and batch."""
    return ["--trust", *signal_at.overrides(signal_name, epoch, batch, add=False)]


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    """The uninterrupted run."""
    cwd = tmp_path_factory.mktemp("twin")
    result = run_cli([*ARGS, *NEVER, "hydra.run.dir=run"], cwd, timeout=TIMEOUT, env=TESTS_ON_PATH)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd / "run"


def without_signal_at(overrides: str) -> str:
    return "".join(line for line in overrides.splitlines(True) if "signal_at" not in line)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_an_interruption_says_where_it_stopped_and_how_to_resume(tmp_path, name, status):
    run = tmp_path / "run"
    result = run_cli([*ARGS, *signal_at.overrides(name, 1, 1), f"hydra.run.dir={run}"], tmp_path,
                     timeout=TIMEOUT, env=TESTS_ON_PATH)
    assert result.returncode == status, result.stderr[-3000:]  # as a shell reports the signal
    assert result.stderr.strip().splitlines()[-1] == (
        f"interrupted at epoch 2/{EPOCHS}; resume with: python -m resnet_exp resume={run}")
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"


@pytest.mark.slow
def test_killed_three_times_and_resumed_ends_exactly_like_the_twin(twin, tmp_path):
    run = tmp_path / "run"
    # SIGINT (Ctrl-C) in epoch 0, before any checkpoint: the resume starts over in the folder
    assert interrupted([*ARGS, *signal_at.overrides("SIGINT", 0, 2), f"hydra.run.dir={run}"],
                       tmp_path) != 0
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert not (run / "checkpoints" / "last.ckpt").exists()
    # resumed: epoch 0 saved, SIGTERM (a scheduler) in epoch 1, which saves last.ckpt after the
    # batch in progress: the next resume starts in the middle of the epoch
    assert interrupted([f"resume={run}", *at("SIGTERM", 1, 3)], tmp_path) == 143
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    done = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"]
    assert 0 < done < BATCHES and saved["Digits"] == {"epoch": saved["epoch"], "batch": done}
    # resumed: epoch 1 replayed and saved, SIGKILL in epoch 2: nothing runs after it, the
    # status stays running
    assert interrupted([f"resume={run}", *at("SIGKILL", 2, 2)], tmp_path) == -signal.SIGKILL
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    assert not (run / "metrics.json").exists()

    result = run_cli([f"resume={run}", *at("SIGTERM", -1, 0)], tmp_path, timeout=TIMEOUT,
                     env=TESTS_ON_PATH)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished"
    assert [r["status"] for r in info["resumed"]] == ["interrupted", "interrupted", "running"]
    twin_metrics = json.loads((twin / "metrics.json").read_text())
    assert twin_metrics["epochs"] == EPOCHS and twin_metrics["global_step"] == BATCHES * EPOCHS
    assert comparable(json.loads((run / "metrics.json").read_text())) == comparable(twin_metrics)
    assert scalars(run) == scalars(twin)
    assert without_signal_at((run / ".hydra" / "overrides.yaml").read_text()) == (
        without_signal_at((twin / ".hydra" / "overrides.yaml").read_text())
        .replace("- hydra.run.dir=run\n", ""))


@pytest.mark.slow
def test_resuming_a_finished_run_changes_nothing(twin, tmp_path):
    before = {p: p.read_bytes() for p in (twin / "metrics.json", twin / "run.json")}
    result = run_cli([f"resume={twin}", "--trust"], tmp_path, timeout=TIMEOUT, env=TESTS_ON_PATH)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "finished already" in " ".join(result.stdout.split())
    assert {p: p.read_bytes() for p in before} == before


@pytest.mark.slow
def test_a_sweep_rerun_with_resume_skips_finished_jobs_and_resumes_the_interrupted_one(
        twin, tmp_path):
    sweep = tmp_path / "sweep"
    # the test's own signal settings change between the attempts: left out of the job folders'
    # names, as resume=true is (conf/hydra/default.yaml), so the rerun finds its jobs
    unnamed = ["resume", *(o.split("=")[0].lstrip("+") for o in NEVER)]
    command = ["-m", f"hydra.sweep.dir={sweep}", "resume=true", *ARGS[1:],
               f"trainer.max_epochs=1,{EPOCHS}",
               f"hydra.job.config.override_dirname.exclude_keys=[{','.join(unnamed)}]"]
    # job 0 (1 epoch) finishes; job 1 (the twin's config) stops itself with SIGTERM in epoch 1
    assert interrupted([*command, *signal_at.overrides("SIGTERM", 1, 3)], tmp_path) == 143
    assert json.loads((job_dir(sweep, 1) / "run.json").read_text())["status"] == "interrupted"
    finished = {p: p.read_bytes()
                for p in (job_dir(sweep, 0) / "metrics.json", job_dir(sweep, 0) / "run.json")}

    result = run_cli([*command, *NEVER], tmp_path, timeout=TIMEOUT, env=TESTS_ON_PATH)  # the rerun
    assert result.returncode == 0, result.stderr[-3000:]
    assert "finished already: not run again" in " ".join(result.stdout.split())  # rich wraps
    assert {p: p.read_bytes() for p in finished} == finished
    assert len(job_dirs(sweep)) == 2  # the rerun made no folder of its own
    info = json.loads((job_dir(sweep, 1) / "run.json").read_text())
    assert info["status"] == "finished" and len(info["resumed"]) == 1
    assert comparable(json.loads((job_dir(sweep, 1) / "metrics.json").read_text())) == comparable(
        json.loads((twin / "metrics.json").read_text()))


class SigtermAt(pl.Callback):
    """Sends this process SIGTERM from inside a hook, as a scheduler might at that moment."""

    def __init__(self, stage: str, epoch: int) -> None:
        self.stage, self.epoch = stage, epoch

    def _maybe(self, trainer, stage: str, batch_idx: int) -> None:
        if (stage, trainer.current_epoch, batch_idx) == (self.stage, self.epoch, 1):
            os.kill(os.getpid(), signal.SIGTERM)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._maybe(trainer, "train", batch_idx)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        self._maybe(trainer, "val", batch_idx)


@pytest.mark.parametrize("stage", ["train", "val"])
def test_sigterm_checkpoints_only_between_training_batches(stage, tmp_path):
    """In a training epoch SIGTERM writes last.ckpt after the batch in progress; in validation,
    whose partial sums no checkpoint holds, last.ckpt stays the previous epoch end's."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from resnet_exp.callbacks import ModelCheckpoint
    from resnet_exp.data import Digits
    from resnet_exp.models.resnet import CifarResNet
    from resnet_exp.training.module import Classifier

    data = Digits(num_classes=10, in_channels=1, image_size=8, mean=[0.3], std=[0.4],
                  batch_size=64, eval_batch_size=60)  # 3 validation batches
    module = Classifier(CifarResNet(depth=8, num_classes=10, in_channels=1), 10,
                        functools.partial(torch.optim.SGD, lr=0.1))
    checkpoint = ModelCheckpoint(dirpath=tmp_path, filename="best", monitor="val/acc",
                                 mode="max", save_last=True)
    trainer = pl.Trainer(max_epochs=3, limit_train_batches=4, accelerator="cpu", logger=False,
                         callbacks=[checkpoint, SigtermAt(stage, epoch=1)],
                         enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, default_root_dir=tmp_path)
    with pytest.raises(SIGTERMException):
        trainer.fit(module, datamodule=data)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    done = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"]
    if stage == "train":  # epoch 1, after its batch 1
        assert (saved["epoch"], done, saved["global_step"]) == (1, 2, 6)
        assert saved["Digits"] == {"epoch": 1, "batch": 2}
    else:  # the end of epoch 0
        assert (saved["epoch"], done, saved["global_step"]) == (0, 4, 4)
