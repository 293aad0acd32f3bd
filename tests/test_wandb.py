"""`logger=wandb` in W&B's offline mode (conftest.py sets WANDB_MODE=offline for the session):
what W&B wrote in the run folder is read back with wandb's own record classes (wandb_files.py)."""

from __future__ import annotations

import json

import pytest
import signal_at
from conftest import ONE_THREAD, TESTS_ON_PATH, job_dirs, run_cli
from wandb_files import offline_runs, read_run

from resnet_exp.runs import resume

pytest.importorskip("wandb", reason="logger=wandb needs W&B's client (the dev extra)")


@pytest.mark.slow
def test_each_job_of_a_sweep_is_its_own_wandb_run_beside_tensorboard(tmp_path):
    # in-process jobs (Hydra's basic launcher): Lightning's WandbLogger would log the second
    # job into the first job's W&B run, which it leaves open
    result = run_cli(["-m", "trainer=smoke", "logger=[tensorboard,wandb]", "seed=1,2",
                      "tags=[baseline]", "name=wb", "hydra.sweep.dir=sweep"],
                     tmp_path, timeout=400, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    ids = set()
    for seed, job in zip((1, 2), job_dirs(tmp_path / "sweep"), strict=True):
        (folder,) = offline_runs(job)
        run = read_run(folder)
        info = json.loads((job / "run.json").read_text())
        metrics = json.loads((job / "metrics.json").read_text())
        assert run.run_id == info["wandb_run_id"] and folder.name.endswith(run.run_id)
        assert (run.name, run.project, run.tags) == ("wb", "resnet_exp", ["baseline"])
        assert run.config["seed"] == seed and run.config["choice/model"] == "resnet20"
        assert run.config["tags"] == "baseline"
        # the summary holds metrics.json's numbers, those never logged as curves too
        for key in ("test/acc", "test_last/acc", "val/acc_best", "best_epoch", "params/total"):
            assert run.summary[key] == pytest.approx(metrics[key]), key
        # the figures as W&B images, their files in the offline run's media folder
        (image,) = [step for step in run.history if "figures/confusion_matrix/path" in step]
        assert image["figures/confusion_matrix/_type"] == "image-file"
        assert (folder / "files" / image["figures/confusion_matrix/path"]).is_file()
        assert run.exit_code == 0
        assert list((job / "tensorboard").glob("events.out.tfevents.*"))
        resume.check_no_links_out(job)  # wandb-core's link to its log in ~/.cache, copied in
        assert f"W&B run: offline; upload with: wandb sync {folder}" in result.stdout
        ids.add(run.run_id)
    assert len(ids) == 2


@pytest.mark.slow
def test_a_run_stopped_by_sigterm_and_resumed_is_one_wandb_run(tmp_path):
    run = tmp_path / "run"
    args = ["trainer=smoke", "trainer.max_epochs=2", "callbacks=lean", "logger=wandb"]
    result = run_cli([*args, *signal_at.overrides("SIGTERM", 1, 1), f"hydra.run.dir={run}"],
                     tmp_path, timeout=300, env={**ONE_THREAD, **TESTS_ON_PATH})
    assert result.returncode == 143, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    (stopped,) = offline_runs(run)
    assert read_run(stopped).exit_code == 1  # W&B shows it as failed, not as running forever
    run_id = json.loads((run / "run.json").read_text())["wandb_run_id"]

    # resume= refuses a folder with a link out of it: wandb-core's link to its own log in
    # ~/.cache was replaced by a copy when the W&B run ended
    result = run_cli([f"resume={run}", "--trust", *signal_at.overrides("SIGTERM", -1, 0, False)],
                     tmp_path, timeout=300, env={**ONE_THREAD, **TESTS_ON_PATH})
    assert result.returncode == 0, result.stderr[-3000:]
    parts = offline_runs(run)
    records = [read_run(p) for p in parts]
    assert [r.run_id for r in records] == [run_id, run_id]
    assert records[1].summary["epochs"] == 2 and records[1].exit_code == 0
    # both parts uploaded as one W&B run, in the order they ran
    line = f"W&B run: offline; upload with: wandb sync --id {run_id} {parts[0]} {parts[1]}"
    assert line in result.stdout.splitlines(), result.stdout[-2000:]


def test_without_an_api_key_online_the_run_stops_with_one_line_that_says_what_to_do(
        tmp_path, monkeypatch):
    from resnet_exp.core.errors import UserError
    from resnet_exp.loggers.wandb import Wandb
    from resnet_exp.runs.context import RunContext
    from resnet_exp.runs.extension import RunStart

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc holding a key
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    logger = Wandb("resnet_exp", "run", str(tmp_path), mode="online")
    with pytest.raises(UserError, match=r"wandb login.*WANDB_MODE=offline.*wandb sync"):
        logger.start(RunStart(RunContext(), record=None))


def test_the_resume_arguments_name_the_wandb_run_of_run_json(tmp_path):
    from resnet_exp.loggers.wandb import Wandb
    from resnet_exp.runs.extension import Resumed

    assert Wandb.resume_arguments(Resumed(tmp_path, 3)) == {}  # no run.json: a new W&B run
    (tmp_path / "run.json").write_text(json.dumps({"wandb_run_id": "ab12cd34"}))
    assert Wandb.resume_arguments(Resumed(tmp_path, 3)) == {"id": "ab12cd34"}
