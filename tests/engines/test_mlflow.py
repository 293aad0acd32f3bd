"""MLflow for real: the README's viewer command on a run's local store, with what `.[mlflow]`
installs, and a run that logs over HTTP to the `mlflow server` that `make test-engines` starts,
read back with MLflow's own client. (tests/test_mlflow.py covers the local store without a
server.)"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from conftest import ROOT, TESTS_ON_PATH, run_cli

from resnet_exp import runs
from resnet_exp.runs import read

pytestmark = [pytest.mark.engines, pytest.mark.slow]

SHORT = ["trainer=smoke", "trainer.max_epochs=2", "deterministic=true"]


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.status, answer.read()


def answers(url: str, process: subprocess.Popen) -> bool:
    """Whether the server at `url` answers its health check, asked at most 120 times a half
    second apart (a bound for a server that never starts, not a timing)."""
    for _ in range(120):
        if process.poll() is not None:
            return False
        try:
            return get(f"{url}/health")[0] == 200
        except OSError:
            time.sleep(0.5)
    return False


def test_readme_viewer_command_serves_the_runs_of_outputs(tmp_path):
    # the extra the README names gives MLflow's server and UI, not the skinny client alone
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["mlflow"]
    assert [r.split(">")[0] for r in extra] == ["mlflow"], extra
    assert metadata.version("mlflow") == metadata.version("mlflow-skinny")  # one version
    result = run_cli(["logger=mlflow", *SHORT, "callbacks=lean"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # the store and the artifacts under outputs/, nothing at the top of the working folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]
    assert (tmp_path / "outputs" / "mlflow.db").is_file()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # the README's command, on a free port of the loopback
    viewer = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri",
         "sqlite:///outputs/mlflow.db", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        assert answers(url, viewer), viewer.stdout.read() if viewer.poll() is not None else ""
        assert get(f"{url}/")[0] == 200  # the UI's page
        status, body = get(f"{url}/ajax-api/2.0/mlflow/experiments/get-by-name"
                           "?experiment_name=resnet_exp")
        experiment = json.loads(body)["experiment"]
        assert status == 200 and experiment["artifact_location"].startswith(
            (tmp_path / "outputs").as_uri())
    finally:
        os.killpg(viewer.pid, signal.SIGTERM)
        viewer.communicate(timeout=60)
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlartifacts").exists()

    # `make clean` takes them away with the runs
    subprocess.run(["make", "-s", "-f", str(ROOT / "Makefile"), "clean"], cwd=tmp_path,
                   check=True, capture_output=True)
    assert list(tmp_path.iterdir()) == []


def test_run_logs_to_a_tracking_server_and_resume_continues_it(tmp_path, mlflow_url):
    from mlflow.tracking import MlflowClient

    logging = ["logger=mlflow", f"logger.mlflow.tracking_uri={mlflow_url}",
               "logger.mlflow.experiment_name=engines", *SHORT, "callbacks=default"]
    # stopped by a SIGTERM it sends itself at epoch 2's second batch (tests/signal_at.py)
    killed = run_cli([*logging, "+callbacks.signal_at._target_=signal_at.SignalAt",
                      "+callbacks.signal_at.signal=SIGTERM", "+callbacks.signal_at.epoch=1",
                      "+callbacks.signal_at.batch=1"], tmp_path, env=TESTS_ON_PATH)
    assert killed.returncode == 143, killed.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "runs").iterdir()
    first_id = read.read_json(run / runs.RUN_FILE)["mlflow_run_id"]
    resumed = run_cli([f"resume={run}", "--trust", "callbacks.signal_at.epoch=-1"], tmp_path,
                      env=TESTS_ON_PATH)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    info = read.read_json(run / runs.RUN_FILE)
    assert info["status"] == "finished" and info["mlflow_run_id"] == first_id

    client = MlflowClient(mlflow_url)
    mlflow_run = client.get_run(first_id)  # over HTTP, from the server's own store
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.params["seed"] == "42"
    assert mlflow_run.data.tags["run_dir"] == str(run.resolve())
    # one point per epoch, epoch 2's once although it ran twice (interrupted, then resumed)
    history = client.get_metric_history(first_id, "val/acc")
    assert sorted(m.step for m in history) == sorted({m.step for m in history})
    assert len(history) == 2, history
    metrics = read.read_json(run / runs.METRICS_FILE)
    assert mlflow_run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    figures = [f.path for f in client.list_artifacts(first_id, "figures")]
    assert figures and all(path.endswith(".png") for path in figures), figures
    # kept by the server (--artifacts-destination), not in the run's working folder
    assert not (tmp_path / "outputs" / "mlartifacts").exists()
    assert get(f"{mlflow_url}/")[0] == 200  # the UI that shows it
    status, body = get(f"{mlflow_url}/ajax-api/2.0/mlflow/runs/get?run_id={first_id}")
    assert status == 200 and json.loads(body)["run"]["info"]["run_id"] == first_id
