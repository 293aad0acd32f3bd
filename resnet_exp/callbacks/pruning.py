"""Optuna pruning inside a search's job: the monitored value goes to the job's own trial every
epoch, and the run stops when the study's pruner says so (hydra_plugins/resnet_exp_sweepers/).

Not optuna-integration's PyTorchLightningPruningCallback: it needs the trial object, which lives
in the sweeper's process while a job runs in a joblib worker or on a SLURM node; it is written for
`lightning.pytorch`, whose callbacks this project's `pytorch_lightning` Trainer refuses; and it
raises TrialPruned inside fit, which would leave the run without its final test. Here the job
finds its trial by number in the storage (the sweeper sets `hydra.sweeper.trial` per job), and a
pruned run ends as a finished one does, tested, with the status `pruned`.
"""

from __future__ import annotations

import threading

import pytorch_lightning as pl
from hydra.utils import instantiate

from resnet_exp.runs.context import RunContext


def build_pruner(cfg):
    """The study's pruner (`hydra.sweeper.pruner`), in the sweeper and in each job alike; null
    is no pruning, where Optuna's own default would be its median pruner."""
    import optuna

    return instantiate(cfg) if cfg else optuna.pruners.NopPruner()


class Heartbeat:
    """A thread that records the trial's heartbeat in the storage every `interval` seconds while
    the job trains and tests, so that the sweeper tells a live trial from one whose job was
    killed (hydra_plugins/resnet_exp_sweepers/: Optuna's fail_stale_trials). A thread, not a
    hook: one validation of a large set can outlast the grace period."""

    def __init__(self, storage, trial_id: int, interval: float | None) -> None:
        beats = hasattr(storage, "record_heartbeat") and interval  # Optuna's RDB and journal
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True) if beats else None

    def start(self) -> None:
        if self.thread is not None and not self.thread.is_alive():
            self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # a busy or unreachable database: the next beat tries again
                pass
            if self.stopped.wait(self.interval):
                return


class OptunaPruning(pl.Callback):
    def __init__(self, storage: str, study_name: str, trial: int, pruner, monitor: str,
                 heartbeat_interval: float | None = None) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        rdb = optuna.storages.get_storage(storage)
        study = optuna.load_study(study_name=study_name, storage=rdb, pruner=pruner)
        trial_id = rdb.get_trial_id_from_study_id_trial_number(
            rdb.get_study_id_from_name(study_name), trial)
        self.trial = optuna.trial.Trial(study, trial_id)
        self.monitor = monitor
        self.pruned_at: int | None = None  # the epoch after which the pruner stopped the run
        self.heartbeat = Heartbeat(rdb, trial_id, heartbeat_interval)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.heartbeat.start()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.heartbeat.stop()

    @classmethod
    def for_this_job(cls, monitor: str, context: RunContext) -> OptunaPruning | None:
        """The callback of a job of an Optuna search that stores its study; None otherwise (a
        single run, another sweeper, an in-memory study that no job can reach)."""
        sweeper = context.sweeper
        if not context.multirun or sweeper.get("trial") is None or not sweeper.get("storage"):
            return None
        return cls(sweeper["storage"], sweeper["study_name"], sweeper["trial"],
                   build_pruner(sweeper.get("pruner")), monitor, sweeper.get("heartbeat_interval"))

    @property
    def pruned(self) -> bool:
        return self.pruned_at is not None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        # every epoch, pruned or not: the dashboard draws each trial's curve from these
        self.trial.report(float(value), step=trainer.current_epoch)
        last = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        # at the last epoch the run has cost all it will: it completes, and TPE learns its value
        if not last and self.trial.should_prune():
            self.pruned_at = trainer.current_epoch
            trainer.should_stop = True  # the epoch ends, then the run is tested as any other
