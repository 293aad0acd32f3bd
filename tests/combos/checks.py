"""What a cell asserts of a finished run beyond its exit status: run.json says finished,
metrics.json holds test/acc, each chosen logger wrote its own files, and no process (each DDP
rank, each sweep job) printed a traceback."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from omegaconf import OmegaConf

from resnet_exp import runs

TRACEBACKS = ("Traceback (most recent call last)", "Error executing job")
# What the processes of a run write besides stdout and stderr: Hydra's job log (one per DDP
# rank: train_ddp_process_1.log), and submitit's per-job .out/.err files.
LOG_SUFFIXES = (".log", ".out", ".err")


def outputs(folder: Path) -> dict[str, str]:
    """Every log file under `folder` (a run, or a sweep with its jobs), by path."""
    return {str(p): p.read_text(errors="replace") for p in sorted(folder.rglob("*"))
            if p.suffix in LOG_SUFFIXES and p.is_file()}


def no_traceback(texts: dict[str, str]) -> None:
    for name, text in texts.items():
        for mark in TRACEBACKS:
            assert mark not in text, f"{name} printed a traceback:\n{text[-4000:]}"


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _tensorboard(run: Path, info: dict, cwd: Path) -> None:
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    # tag names are plain bytes in the event protobufs: no TensorBoard import (~1 s) to find one
    assert any(b"test/acc" in p.read_bytes() for p in events), f"no test/acc in {events}"


def _csv(run: Path, info: dict, cwd: Path) -> None:
    header = (run / runs.CSV_METRICS_FILE).read_text().splitlines()[0].split(",")
    assert "test/acc" in header, header


def _mlflow(run: Path, info: dict, cwd: Path) -> None:
    uri = OmegaConf.load(run / ".hydra" / "config.yaml").logger.mlflow.tracking_uri
    store = Path(uri.removeprefix("sqlite:///"))
    store = store if store.is_absolute() else cwd / store  # relative to where the run started
    run_id = info["mlflow_run_id"]
    with sqlite3.connect(store) as db:  # MLflow's own tables; its client takes ~3 s to import
        (status,) = db.execute("select status from runs where run_uuid = ?", (run_id,)).fetchone()
        values = db.execute("select value from metrics where run_uuid = ? and key = 'test/acc'",
                            (run_id,)).fetchall()
    assert status == "FINISHED" and values, (store, run_id, status, values)


def _wandb(run: Path, info: dict, cwd: Path) -> None:
    records = list((run / "wandb").glob("offline-run-*/run-*.wandb"))  # WANDB_MODE=offline
    assert any(b"test/acc" in p.read_bytes() for p in records), f"no test/acc in {records}"


# What each logger option writes into a finished run; a new logger option needs its line here.
LOGGER_FILES = {"tensorboard": _tensorboard, "csv": _csv, "mlflow": _mlflow, "wandb": _wandb}


def status(run: Path) -> str:
    return _read(run / runs.RUN_FILE)["status"]


def finished(run: Path, loggers: list[str], cwd: Path) -> dict:
    """Asserts that `run` (started in `cwd`) finished and wrote what each of `loggers` writes;
    returns its metrics.json."""
    info = _read(run / runs.RUN_FILE)
    assert info["status"] == "finished", (run, info["status"], info.get("error"))
    metrics = _read(run / runs.METRICS_FILE)
    assert "test/acc" in metrics, sorted(metrics)
    for name in loggers:
        assert name in LOGGER_FILES, f"logger={name}: say in LOGGER_FILES what it writes"
        LOGGER_FILES[name](run, info, cwd)
    return metrics


def comparable(metrics: dict) -> dict:
    """A run's metrics less its timings, which no two runs share."""
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}
