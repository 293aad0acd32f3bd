"""MLflow (`logger=mlflow`): one MLflow run per run folder.

    python -m resnet_exp 'logger=[tensorboard,mlflow]' 'tags=[baseline]'
    mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db

The MLflow run is named by `name`, tagged with `tags` and the folder; it gets the curves as they
are logged, the settings and final metrics at the end, the figures and metrics.json as artifacts.
`resume=RUN_DIR` continues the same MLflow run: its id is in run.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from resnet_exp.core.errors import UserError
from resnet_exp.runs import FIGURES_DIR, GRADIENT_FLOW_FILE, RUN_FILE, read
from resnet_exp.runs.extension import Extension, Resumed, RunEnd, RunStart


class MLflow(MLFlowLogger, Extension):
    """Lightning's MLFlowLogger on `tracking_uri` (a relative `sqlite:///` path is from the
    working directory: its folder is made). `run_id`: an earlier MLflow run to continue."""

    def __init__(self, experiment_name: str, run_name: str, tracking_uri: str,
                 tags: list | None = None, run_dir: str | None = None, run_id: str | None = None,
                 artifact_location: str | None = None) -> None:
        try:
            import mlflow as _  # noqa: F401  (MLFlowLogger imports it only when first used)
        except ImportError:
            raise UserError("logger=mlflow needs MLflow's client: pip install 'mlflow-skinny>=3' "
                            "(or pip install -e '.[mlflow]')") from None
        if tracking_uri.startswith("sqlite:///"):
            Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        if run_id is not None and not _alive(tracking_uri, run_id):
            # the run folder is the truth: its training continues, its MLflow record starts anew
            print(f"warning: MLflow run {run_id} is gone from {tracking_uri} (deleted, or the "
                  "store was moved): this run continues in a new MLflow run", file=sys.stderr)
            run_id = None
        labels = {str(t): "true" for t in tags or []}
        if run_dir is not None:
            labels["run_dir"] = str(Path(run_dir).resolve())
        if artifact_location and "://" not in artifact_location:  # a URI; a path is local
            # a folder of this machine means nothing to a tracking server's other users: there
            # the server keeps the artifacts (`mlflow server --artifacts-destination`)
            remote = tracking_uri.startswith(("http://", "https://"))
            artifact_location = None if remote else Path(artifact_location).resolve().as_uri()
        super().__init__(experiment_name=experiment_name, run_name=run_name,
                         tracking_uri=tracking_uri, tags=labels, run_id=run_id,
                         artifact_location=artifact_location)

    @classmethod
    def resume_arguments(cls, resumed: Resumed) -> dict:
        try:
            run_id = read.read_json(resumed.run_dir / RUN_FILE).get("mlflow_run_id")
        except (OSError, ValueError):  # an unreadable run.json: a new MLflow run
            run_id = None
        return {"run_id": run_id} if run_id else {}

    def start(self, run: RunStart) -> None:
        if run.rank_zero:  # other ranks' experiment is a dummy without a run
            run.record.update(mlflow_run_id=self.run_id, mlflow_run=self.places()["MLflow run"])

    def finish(self, end: RunEnd) -> None:
        record_final(self, end.settings, end.metrics, end.run_dir)
        self.save()

    def places(self) -> dict[str, str]:
        return {"MLflow run": run_url(self._tracking_uri, self.experiment_id, self.run_id)}


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Where a user sees the MLflow run: its page on a tracking server, or for a local store,
    its id and the command that serves the store.

    >>> run_url("http://127.0.0.1:5000/", "1", "ab12")
    'http://127.0.0.1:5000/#/experiments/1/runs/ab12'
    >>> run_url("sqlite:///outputs/mlflow.db", "1", "ab12")
    'ab12 (mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db)'
    """
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{run_id} (mlflow ui --backend-store-uri {tracking_uri})"


def _alive(tracking_uri: str, run_id: str) -> bool:
    """Whether the store holds `run_id`, not deleted (MLflow refuses to log to a deleted run)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return MlflowClient(tracking_uri).get_run(run_id).info.lifecycle_stage != "deleted"
    except MlflowException:
        return False


def log_artifacts(logger: MLFlowLogger, run_dir: Path, names: tuple[str, ...]) -> None:
    """Copy the run folder's `names` (files or folders) that exist into the MLflow run."""
    for name in names:
        path = run_dir / name
        if path.is_dir():
            logger.experiment.log_artifacts(logger.run_id, str(path), name)
        elif path.is_file():
            logger.experiment.log_artifact(logger.run_id, str(path))


@rank_zero_only  # as the logger's own log_hyperparams: other ranks' experiment is a dummy
def record_final(logger: MLFlowLogger, params: dict, metrics: dict, run_dir: Path) -> None:
    """The end of a run in its MLflow run: the settings (MLflow refuses to change a logged
    parameter, so a resumed run adds only the new ones), the final numbers, the artifacts."""
    logged = logger.experiment.get_run(logger.run_id).data.params
    logger.log_hyperparams({k: v for k, v in params.items() if k not in logged})
    logger.log_metrics({k: float(v) for k, v in metrics.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
    log_artifacts(logger, run_dir, (FIGURES_DIR, GRADIENT_FLOW_FILE))
