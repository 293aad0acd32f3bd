"""The Python API (resnet_exp/api.py): `resnet_exp.run` is the command line's run in this
process, `resnet_exp.load_run` a trained run's config, best weights and metrics; the README's
example runs as printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import resnet_exp
from resnet_exp import runs
from resnet_exp.core.errors import UserError
from resnet_exp.runs import read
from resnet_exp.training import checkpoints

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs land in ./outputs, as from a notebook in a project folder
    return tmp_path


@pytest.mark.slow
def test_a_run_in_this_process_is_the_command_lines_run(in_tmp):
    run = resnet_exp.run(["trainer=smoke", "callbacks=lean", "seed=3"], output_dir="mine")
    assert run.dir == in_tmp / "mine" and run.status == "finished"
    saved = read.read_json(run.dir / runs.METRICS_FILE)
    assert {key: run.metrics[key] for key in saved} == saved
    assert 0.0 <= run.metrics["test/acc"] <= 1.0
    assert list(OmegaConf.load(run.dir / runs.OVERRIDES_FILE)) == [
        "trainer=smoke", "callbacks=lean", "seed=3"]  # a run folder as the CLI writes it
    # what the notebook logs after the run goes where it went before, not into the run's log
    import logging

    logging.getLogger("after_the_run").warning("logged after the run")
    assert not any("logged after the run" in log.read_text() for log in run.dir.glob("*.log"))

    trained = resnet_exp.load_run(run.dir)
    assert trained.cfg.seed == 3 and trained.metrics["test/acc"] == run.metrics["test/acc"]
    assert not trained.model.training
    best = checkpoints.load(read.checkpoint_path(run.dir, "best"))["state_dict"]
    for name, tensor in trained.model.state_dict().items():
        assert torch.equal(tensor, best[f"model.{name}"]), name
    assert trained.model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.slow
def test_loading_a_run_that_names_outside_code_is_refused(smoke_run_copy):
    saved = [*OmegaConf.load(smoke_run_copy / runs.OVERRIDES_FILE),
             "+callbacks.x._target_=torch.utils.collect_env.run"]
    OmegaConf.save(OmegaConf.create(saved), smoke_run_copy / runs.OVERRIDES_FILE)
    with pytest.raises(UserError, match="collect_env.run would run code"):
        resnet_exp.load_run(smoke_run_copy)


@pytest.mark.slow
def test_the_readmes_python_example_runs_as_printed(in_tmp, capsys):
    readme = (ROOT / "README.md").read_text()
    (example,) = re.findall(r"## In Python\n\n```python\n(.*?)```", readme, re.S)
    exec(compile(example, "README.md", "exec"), {})
    printed = capsys.readouterr().out.strip().splitlines()
    folder, status, accuracy = printed[-2].split()
    assert status == "finished" and (in_tmp / folder).is_dir()
    assert printed[-1].split() == [printed[-1].split()[0], accuracy]
    assert float(accuracy) > 0.5  # two epochs of the digits: chance is 0.1
