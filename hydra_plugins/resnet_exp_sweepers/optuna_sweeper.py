"""An Optuna search as a Hydra sweeper, on Optuna's ask-and-tell API (Optuna >= 4).

Why not hydra-optuna-sweeper: its last release (1.3.0) still requires optuna < 3 and with it
SQLAlchemy 1.4, which keeps a current environment out, and it has no pruning. The config
surface is the same (conf/hydra/sweeper/optuna.yaml): the search space in `params` with Hydra's
sweep syntax, `direction`, `storage`, `study_name`, `n_trials`, `n_jobs`, `max_failure_rate`,
a `sampler` and a `pruner` built by `instantiate`.

    choice(a, b) or a,b            CategoricalDistribution
    range(1, 10) / range(0.1, 1, 0.1)   IntDistribution / FloatDistribution with its step
    interval(0.01, 0.5)            FloatDistribution (IntDistribution with tag(int, ...))
    tag(log, interval(...))        the same, log-uniform

Each batch asks `n_jobs` trials, launches them through the configured launcher (basic, joblib,
submitit/SLURM) and tells the study how each ended: COMPLETE with the value the job returned
(the run's best `monitor` value), FAIL for a job that raised or returned NaN or nothing, PRUNED
for a run whose `status` is `pruned`. Pruning happens inside the job: the job's own
`hydra.sweeper.trial` (set here, per job) is its trial's number, and
resnet_exp/callbacks/pruning.py re-attaches to that trial through the storage, reports the
monitored value every epoch and stops the run when the pruner says so.

A continued study (`hydra.sweeper.storage=` an existing optuna.db) gets a sampler seeded with
`seed + trials the study has`: new points, and the same ones for the same continuation (a sampler
seeded as the first sweep's, still in its random start-up, proposed trial 0's parameters again).

It lives under `hydra_plugins/` because Hydra loads sweepers from that package only.
"""

from __future__ import annotations

import math
import shutil
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from sqlalchemy.exc import SQLAlchemyError

from resnet_exp import runs
from resnet_exp.core.config import text
from resnet_exp.core.errors import UserError, report_error
from resnet_exp.runs import read

from .search_space import same_space, search_space


def job_overrides(fixed: list[str], params: Mapping[str, Any], trial: int,
                  folder: int | None = None) -> list[str]:
    """A trial's job: the fixed overrides, its drawn values as overrides spell them (a drawn None
    is `null`, which Hydra reads back as None, not the string "None"), its trial number and the
    number its folder carries (`folder`, the trial's unless given)."""
    return [*fixed, *(f"{k}={text(v)}" for k, v in params.items()), f"hydra.sweeper.trial={trial}",
            f"hydra.sweeper.folder={trial if folder is None else folder}"]


def folder_number(study, trial) -> int:
    """The number of `trial`'s job folder: its own, or for a trial asked again after its job was
    killed (RetryFailedTrialCallback), the killed trial's, so that its job continues that
    folder's last checkpoint under resume=true."""
    from optuna.storages import RetryFailedTrialCallback

    frozen = study._storage.get_trial(trial._trial_id)
    retried = RetryFailedTrialCallback.retried_trial_number(frozen)
    return trial.number if retried is None else retried


DIRECTIONS = {"max": "maximize", "maximize": "maximize", "min": "minimize", "minimize": "minimize"}


def optuna_direction(direction: str) -> str:
    """Optuna's name for `direction`, which is `monitor_mode` (min/max) unless given.

    >>> optuna_direction("min")
    'minimize'
    """
    if str(direction).lower() not in DIRECTIONS:
        raise UserError(f"hydra.sweeper.direction={direction}: choose maximize or minimize (or "
                        "leave it to monitor_mode, which follows the monitored metric)")
    return DIRECTIONS[str(direction).lower()]


def ended_trials(study) -> list:
    """The trials of `study` that ended (complete, pruned, or failed in their job), leaving out
    those that failed stale and were asked again (RetryFailedTrialCallback)."""
    from optuna.storages import RetryFailedTrialCallback
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {RetryFailedTrialCallback.retried_trial_number(t) for t in trials}
    return [t for t in trials if t.number not in retried
            and t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]


def found(best, metric: str, storage: str | None) -> str:
    """What a search says at its end: its best trial, where that run is, how to look at all.
    >>> from optuna.distributions import FloatDistribution; from optuna.trial import create_trial
    >>> best = create_trial(value=0.9, params={"lr": 0.1}, user_attrs={"run_dir": "runs/3"},
    ...                     distributions={"lr": FloatDistribution(0.01, 0.5)})
    >>> best.number = 3
    >>> print(found(best, "val/acc_best", "sqlite:///s.db"))
    best trial 3: val/acc_best=0.9 {'lr': 0.1}
      run folder: runs/3
    study: sqlite:///s.db; to look at every trial: optuna-dashboard sqlite:///s.db
    """
    run_dir = best.user_attrs.get("run_dir", "?")
    lines = [f"best trial {best.number}: {metric}={best.value:.6g} {best.params}",
             f"  run folder: {run_dir}"]
    try:  # where the run's MLflow logger put it (loggers/mlflow.py records it in run.json)
        mlflow = read.read_json(Path(run_dir) / runs.RUN_FILE).get("mlflow_run")
    except (OSError, ValueError):
        mlflow = None
    lines += [f"  MLflow run: {mlflow}"] if mlflow else []
    view = str(storage).removeprefix("journal:///")  # the dashboard opens a journal by its path
    return "\n".join(lines + ([f"study: {storage}; to look at every trial: optuna-dashboard "
                                f"{view}"] if storage else []))


def beat(storage, study_name: str, number: int) -> None:
    """One heartbeat for trial `number`, on a storage that keeps them."""
    if getattr(storage, "is_heartbeat_enabled", lambda: False)():  # Optuna's RDB storage
        storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(study_name), number))


class OptunaSweeper(Sweeper):
    # a job that raises is told to the study as a FAIL trial, its traceback kept (__main__.py)
    records_job_errors = True

    def __init__(self, sampler: DictConfig, pruner: DictConfig | None, direction: str,
                 study_name: str, storage: str | None, n_trials: int, n_jobs: int,
                 max_failure_rate: float, params: DictConfig | None = None,
                 trial: int | None = None, heartbeat_interval: int = 60,
                 grace_period: int = 180, folder: int | None = None) -> None:
        # `trial` and `folder` are each job's own (which trial it runs), never the sweeper's
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.sampler_cfg, self.pruner_cfg = sampler, pruner
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.params = params

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        self.sweep_dir = Path(config.hydra.sweep.dir)
        try:
            self.direction = optuna_direction(self.direction)
            for key in ("n_trials", "n_jobs"):
                if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                    raise UserError(f"hydra.sweeper.{key}={getattr(self, key)}: give a whole "
                                    "number >= 1")
        except UserError as e:
            self.give_up(e)

    def give_up(self, error: Exception) -> None:
        """One line and status 2 (a SystemExit passes Hydra's error report), leaving no sweep
        folder behind when nothing ran: the one the output check claimed holds only its file."""
        if self.sweep_dir.is_dir() and [p.name for p in self.sweep_dir.iterdir()] == [
                runs.SWEEP_FILE]:
            shutil.rmtree(self.sweep_dir, ignore_errors=True)
        sys.exit(report_error(str(error)))

    def heartbeat_storage(self):
        """The study's storage (callbacks/pruning.open_storage), with Optuna's heartbeat where it
        keeps one (an RDB: SQLite, PostgreSQL, MySQL): a trial whose job was killed (kill -9, a
        lost node) stops beating, is marked FAIL `grace_period` seconds later, and its parameters
        run again as a new trial (RetryFailedTrialCallback). Each job beats for its trial."""
        from optuna.storages import RetryFailedTrialCallback

        from resnet_exp.callbacks.pruning import open_storage

        self.storage_object = self.storage
        if self.storage and "://" in str(self.storage):
            self.storage_object = open_storage(
                str(self.storage), heartbeat_interval=self.heartbeat_interval,
                grace_period=self.grace_period,
                failed_trial_callback=RetryFailedTrialCallback(max_retry=1))
        return self.storage_object

    def study(self):
        import optuna

        # the jobs build the same pruner; Lightning loads only here, when a search starts
        from resnet_exp.callbacks.pruning import build_pruner

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep's table says it all
        try:
            study = optuna.create_study(
                study_name=self.study_name, storage=self.heartbeat_storage(),
                direction=self.direction, pruner=build_pruner(self.pruner_cfg),
                load_if_exists=True)
            with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([f"{self.config.monitor}_best"])  # the dashboard's name
        except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
            first = str(e).strip().splitlines()[0]
            raise UserError(f"hydra.sweeper.storage={self.storage} cannot be opened as an Optuna "
                            f"storage ({first}): give another storage, or move the file away"
                            ) from None
        stored = study.direction.name.lower()
        if stored != self.direction:  # a loaded study keeps its own direction, silently
            raise UserError(f"the study {self.study_name!r} in {self.storage} is {stored}d, but "
                            f"this search would {self.direction} {self.config.monitor}: give the "
                            "same monitor and direction, or a new hydra.sweeper.storage")
        seed = self.sampler_cfg.get("seed")
        done = len(study.trials)  # a continued study: new points (module docstring)
        study.sampler = instantiate(self.sampler_cfg, **(
            {"seed": seed + done} if seed is not None and done else {}))
        return study

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        self.sweep_dir.mkdir(parents=True, exist_ok=True)  # sqlite cannot make its folder
        try:
            space, fixed = search_space(self.params, arguments)
            study = self.study()
            same_space(study, space)
        except (UserError, ValueError) as e:  # nothing ran
            self.give_up(e)
        OmegaConf.save(self.config, self.sweep_dir / runs.SWEEP_FILE)
        # resume=true finishes the search the study holds: its ended trials count, those a
        # killed search left RUNNING run again (each batch first marks the stale ones)
        launched = len(ended_trials(study)) if self.config.get("resume") else 0
        while launched < self.n_trials:
            optuna.storages.fail_stale_trials(study)  # a no-op on a storage without heartbeats
            trials = [study.ask(space) for _ in range(min(self.n_jobs, self.n_trials - launched))]
            for trial in trials:  # a first beat: a job killed before its own is found stale too
                beat(self.storage_object, self.study_name, trial.number)
            batch = [job_overrides(fixed, t.params, t.number, folder_number(study, t))
                     for t in trials]
            self.validate_batch_is_legal(batch)
            returns = self.launcher.launch(batch, initial_job_idx=launched)
            launched += len(batch)
            failures = sum(not tell(study, trial, job) for trial, job in zip(trials, returns,
                                                                            strict=True))
            if failures / len(batch) > self.max_failure_rate:
                raise RuntimeError(f"{failures} of {len(batch)} trials of a batch failed, more "
                                   f"than hydra.sweeper.max_failure_rate={self.max_failure_rate}")
        self.report(study)

    def report(self, study) -> None:
        """The best trial, in optimization_results.yaml and printed with the dashboard command."""
        import optuna
        from optuna.trial import TrialState

        try:
            best = study.best_trial
        except ValueError:  # no trial completed
            print("error: no trial of the search completed (failed or pruned: see the table "
                  "below and each job's run.json)", file=sys.stderr)
            return
        counts = {s.name.lower(): sum(t.state == s for t in study.trials)
                  for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
        OmegaConf.save(OmegaConf.create({
            "name": "optuna", "best_trial": best.number, "best_params": best.params,
            "best_value": best.value, "trials": counts, "optuna": optuna.__version__}),
            self.sweep_dir / "optimization_results.yaml")
        print(found(best, f"{self.config.monitor}_best", self.storage), flush=True)


def tell(study, trial, job) -> bool:
    """Tell the study how the trial's job ended: pruned (its run.json says so), failed (it raised,
    or returned nothing or NaN), or its value. Whether it did not fail."""
    from optuna.trial import TrialState

    try:
        value = job.return_value
    except Exception:  # the job's error is in its run.json and the table
        value = None
    run_dir = Path(job.hydra_cfg.hydra.runtime.output_dir)
    trial.set_user_attr("run_dir", str(run_dir.resolve()))  # the dashboard shows it
    if read.run_status(run_dir) == runs.PRUNED:
        study.tell(trial, state=TrialState.PRUNED)
    elif value is None or (isinstance(value, float) and math.isnan(value)):
        study.tell(trial, state=TrialState.FAIL)
        return False
    else:
        study.tell(trial, float(value))
    return True
