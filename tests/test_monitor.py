""""Higher is better" has one home, `monitor_mode` (derived from `monitor`'s name, or given): the
checkpoint, early stopping, the Optuna direction and the sweep table all read it. With
`monitor=val/loss` the best checkpoint is the lowest-loss epoch and early stopping waits for the
loss to stop falling.
"""

from __future__ import annotations

import json

import optuna
import pytest
from conftest import run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import resnet_exp
from hydra_plugins.resnet_exp_sweepers import optuna_sweeper
from resnet_exp.core import config
from resnet_exp.core.errors import UserError
from resnet_exp.runs import record, sweep_table


@pytest.mark.parametrize(("monitor", "given", "mode"), [
    ("val/acc", None, "max"), ("val/loss", None, "min"), ("val/acc_ema", None, "max"),
    ("val/loss", "max", "max"),
])
def test_every_reader_of_the_mode_follows_the_monitor(compose_cfg, monitor, given, mode):
    extra = [f"monitor_mode={given}"] if given else []
    cfg = compose_cfg(f"monitor={monitor}", "hparams_search=cifar_resnet", *extra)
    assert cfg.monitor_mode == mode
    assert cfg.callbacks.model_checkpoint.mode == mode
    assert cfg.callbacks.early_stopping.mode == mode
    assert optuna_sweeper.optuna_direction(cfg.hydra.sweeper.direction) == f"{mode}imize"


def test_a_mode_that_is_neither_is_one_line(tmp_path):
    result = run_cli(["monitor_mode=highest"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "monitor_mode=highest: choose min" in result.stderr
    assert not (tmp_path / "outputs").exists()


def _early_stop(losses: list[float], patience: int) -> int | None:
    """The epoch after which Lightning's EarlyStopping(mode=min, min_delta=0) stops a run with
    these validation losses; None if it never does."""
    best, waited = float("inf"), 0
    for epoch, loss in enumerate(losses, start=1):
        best, waited = (loss, 0) if loss < best else (best, waited + 1)
        if waited >= patience:
            return epoch
    return None


@pytest.mark.slow
def test_val_loss_keeps_the_lowest_loss_epoch_and_stops_when_it_stops_falling(tmp_path):
    finished = resnet_exp.run(["trainer=smoke", "trainer.max_epochs=5", "callbacks=lean",
                               "seed=3", "monitor=val/loss", "callbacks.early_stopping.patience=1"],
                              output_dir=tmp_path / "run")
    assert finished.status == "finished"
    run = finished.dir
    metrics = json.loads((run / "metrics.json").read_text())
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    losses = [e.value for e in events.Scalars("val/loss")]
    assert len(set(losses)) > 1  # a lowest and a highest epoch to tell apart
    assert metrics["epochs"] == len(losses) == (_early_stop(losses, patience=1) or 5)
    assert metrics["val/loss_best"] == pytest.approx(min(losses))
    assert metrics["best_epoch"] == losses.index(min(losses)) + 1  # counted from 1


def test_the_sweep_table_bolds_the_lowest_loss_when_lower_is_better(tmp_path):
    for num, loss in enumerate([0.9, 0.3, 0.6]):
        job = tmp_path / f"{num}_seed={num}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- seed={num}\n")
        (job / ".hydra" / "config.yaml").write_text(f"seed: {num}\nmonitor: val/loss\n")
        record.write_json_atomic(job / "run.json", {"status": "finished", "seed": num})
        record.write_json_atomic(job / "metrics.json", {"val/loss_best": loss})
    table = sweep_table.sweep_table(tmp_path, "val/loss", "min")
    assert [row.style for row in table.rows] == [None, "bold", None]


def test_a_search_cannot_turn_a_stored_study_around(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(study_name="search", storage=storage, direction="maximize")
    sweeper = optuna_sweeper.OptunaSweeper(
        sampler={"_target_": "optuna.samplers.RandomSampler"}, pruner=None, direction="min",
        study_name="search", storage=storage, n_trials=1, n_jobs=1, max_failure_rate=1.0)
    sweeper.direction = optuna_sweeper.optuna_direction(sweeper.direction)
    sweeper.config = config.compose(["monitor=val/loss"])
    with pytest.raises(UserError, match="is maximized, but this search would minimize val/loss"):
        sweeper.study()
