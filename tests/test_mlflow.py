"""`logger=mlflow` against a real local MLflow store, read back with MLflow's own client."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli, single_run_dir


@pytest.mark.slow
def test_a_run_and_its_resume_are_one_mlflow_run_with_name_tags_metrics_and_figures(tmp_path):
    # imported here, not at collection: MLflow takes seconds to import, in every worker
    pytest.importorskip("mlflow", reason="logger=mlflow needs mlflow-skinny (the dev extra)")
    from mlflow.tracking import MlflowClient

    args = ["trainer=smoke", "logger=[tensorboard,mlflow]", "tags=[baseline,digits]",
            "name=ml_run"]
    result = run_cli(args, tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Creating initial MLflow database" not in result.stderr + result.stdout
    run_dir = single_run_dir(tmp_path)
    client = MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "resnet_exp"]
    (run,) = client.search_runs([experiment.experiment_id])
    recorded = json.loads((run_dir / "metrics.json").read_text())
    assert run.info.run_name == "ml_run" and run.info.status == "FINISHED"
    assert run.data.tags["baseline"] == run.data.tags["digits"] == "true"
    assert run.data.tags["run_dir"] == str(run_dir.resolve())
    assert run.data.metrics["test/acc"] == pytest.approx(recorded["test/acc"])
    assert run.data.metrics["val/acc_best"] == pytest.approx(recorded["val/acc_best"])
    assert run.data.params["choice/model"] == "resnet20"
    assert run.data.params["tags"] == "baseline,digits"
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert "figures/confusion_matrix.png" in figures
    # artifacts under outputs/ (which `make clean` removes), never in ./mlruns
    assert not (tmp_path / "mlruns").exists()
    assert list((tmp_path / "outputs" / "mlartifacts").rglob("confusion_matrix.png"))
    assert json.loads((run_dir / "run.json").read_text())["mlflow_run_id"] == run.info.run_id
    # the summary says where the MLflow run is, whole, on a line of its own
    assert f"MLflow run: {run.info.run_id} (mlflow ui --backend-store-uri " in result.stdout

    # interrupted after its first epoch, then resumed to a second one: the same MLflow run
    info = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps(info | {"status": "interrupted"}))
    (run_dir / "metrics.json").unlink()
    result = run_cli([f"resume={run_dir}", "trainer.max_epochs=2"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (resumed,) = client.search_runs([experiment.experiment_id])
    assert resumed.info.run_id == run.info.run_id
    epochs = client.get_metric_history(run.info.run_id, "epochs")
    assert [m.value for m in epochs] == [1, 2]
    assert resumed.data.params["trainer/max_epochs"] == "1"  # MLflow keeps a parameter as set


@pytest.mark.parametrize("gone", ["deleted", "never there"])
def test_a_resume_whose_mlflow_run_is_gone_continues_in_a_new_one(tmp_path, capsys, gone):
    pytest.importorskip("mlflow", reason="logger=mlflow needs mlflow-skinny (the dev extra)")
    from mlflow.tracking import MlflowClient

    from resnet_exp.loggers.mlflow import MLflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    old = client.create_run(client.create_experiment("resnet_exp")).info.run_id
    if gone == "deleted":
        client.delete_run(old)
    logger = MLflow("resnet_exp", "run", uri, run_id=old if gone == "deleted" else "0f")
    assert logger.run_id not in (old, "0f")
    assert client.get_run(logger.run_id).info.lifecycle_stage == "active"
    assert "is gone from" in capsys.readouterr().err
