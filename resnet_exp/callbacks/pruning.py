"""Optuna pruning inside a search's job: the monitored value goes to the job's own trial every
epoch, and the run stops when the study's pruner says so (hydra_plugins/resnet_exp_sweepers/).

Not optuna-integration's PyTorchLightningPruningCallback: it needs the trial object, which lives
in the sweeper's process while a job runs in a joblib worker or on a SLURM node; it is written for
`lightning.pytorch`, whose callbacks this project's `pytorch_lightning` Trainer refuses; and it
raises TrialPruned inside fit, which would leave the run without its final test. Here the job
finds its trial by number in the storage (the sweeper sets `hydra.sweeper.trial` per job), and a
pruned run ends as a finished one does, tested, with the status `pruned`.

An extension of the run (resnet_exp/runs/extension.py), chosen by the search's config
(conf/hparams_search/: `callbacks.optuna_pruning`): it attaches to its trial when the run starts,
and does nothing in a run that is no job of a search with a storage (a trial reproduced alone, an
in-memory study that no job can reach).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate

from resnet_exp.runs import PRUNED
from resnet_exp.runs.extension import Extension, RunStart

JOURNAL = "journal:///"


def open_storage(url: str, **heartbeat):
    """The study's storage (`hydra.sweeper.storage`), in the sweeper and in each job alike.

    An SQLAlchemy URL is an RDB storage: `sqlite:///<file>` on one machine, a database server
    (`postgresql+psycopg://user@host/db`, `mysql+pymysql://...`) for trials running on several
    nodes at once. `journal:///<file>` (a relative path; `journal:////abs/path`, as sqlite's
    URLs) is Optuna's JournalFileBackend: an append-only log with its own file lock, written for
    a shared network filesystem (NFS), where SQLite's locking corrupts the database. `heartbeat`
    (heartbeat_interval, grace_period, failed_trial_callback) goes to an RDB storage: Optuna
    5.1's journal keeps no heartbeats."""
    import optuna

    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len(JOURNAL):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    return optuna.storages.RDBStorage(url, **heartbeat)


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
        beats = hasattr(storage, "record_heartbeat") and interval  # an RDB storage (not a journal)
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


class OptunaPruning(pl.Callback, Extension):
    """Report `monitor` to the job's trial every epoch; stop the run when the pruner says so."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.trial = None  # the job's trial, once attached (start)
        self.pruned_at: int | None = None  # the epoch after which the pruner stopped the run
        self.heartbeat: Heartbeat | None = None

    def start(self, run: RunStart) -> None:
        sweeper = run.context.sweeper
        if not run.context.multirun or sweeper.get("trial") is None or \
                not sweeper.get("storage"):
            return
        self.attach(sweeper["storage"], sweeper["study_name"], sweeper["trial"],
                    build_pruner(sweeper.get("pruner")), sweeper.get("heartbeat_interval"))

    def attach(self, storage: str, study_name: str, trial: int, pruner,
               heartbeat_interval: float | None = None) -> None:
        """Report to trial number `trial` of the study in `storage`."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        rdb = open_storage(storage)
        study = optuna.load_study(study_name=study_name, storage=rdb, pruner=pruner)
        trial_id = rdb.get_trial_id_from_study_id_trial_number(
            rdb.get_study_id_from_name(study_name), trial)
        self.trial = optuna.trial.Trial(study, trial_id)
        self.heartbeat = Heartbeat(rdb, trial_id, heartbeat_interval)

    def status(self) -> str | None:
        return PRUNED if self.pruned else None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.heartbeat is not None:
            self.heartbeat.start()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()

    @property
    def pruned(self) -> bool:
        return self.pruned_at is not None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if self.trial is None or trainer.sanity_checking or value is None:
            return
        # every epoch, pruned or not: the dashboard draws each trial's curve from these
        self.trial.report(float(value), step=trainer.current_epoch)
        last = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        # at the last epoch the run has cost all it will: it completes, and TPE learns its value
        if not last and self.trial.should_prune():
            self.pruned_at = trainer.current_epoch
            trainer.should_stop = True  # the epoch ends, then the run is tested as any other
