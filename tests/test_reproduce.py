"""`python -m resnet_exp.reproduce RUN_DIR`: a finished deterministic CPU run, run again from its
saved config into a new folder, gives exactly its metrics; overrides change the replay; a config
naming code outside the allow-list is refused by reproduce and resume alike."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli
from omegaconf import OmegaConf

from resnet_exp import reproduce, runs
from resnet_exp.runs import read


def run_reproduce(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return run_cli(args, cwd, timeout=300, module="resnet_exp.reproduce")


@pytest.fixture
def original(smoke_run) -> Path:
    """The shared finished run (conftest.SMOKE_RUN); reproductions land in their own cwd."""
    return smoke_run


def new_run(cwd: Path) -> Path:
    (folder,) = (cwd / "outputs" / "runs").iterdir()
    return folder


@pytest.mark.slow
def test_a_reproduction_matches_exactly_and_says_what_it_reproduces(original, tmp_path):
    result = run_reproduce([str(original)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = " ".join(result.stdout.split())
    assert "identical: all" in out and "metrics (time/* aside)" in out
    assert "config tree has changed" not in result.stderr, result.stderr[-2000:]
    run = new_run(tmp_path)
    assert run.name.endswith("_resnet20_digits")
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["reproduces"] == str(original.resolve())
    old, new = (json.loads((r / "metrics.json").read_text()) for r in (original, run))
    assert {k: v for k, v in new.items() if not k.startswith("time/")} == {
        k: v for k, v in old.items() if not k.startswith("time/")}
    # the same overrides, and the original's CPU thread count pinned: the same float sums
    threads = json.loads((original / "run.json").read_text())["cpu_threads"]
    assert read.read_overrides(run) == [*read.read_overrides(original), f"cpu_threads={threads}"]
    assert info["cpu_threads"] == threads


@pytest.mark.slow
def test_overrides_change_the_replay_and_the_table_shows_the_difference(original, tmp_path):
    result = run_reproduce([str(original), "trainer.max_epochs=1"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((new_run(tmp_path) / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["global_step"] == 3
    assert "metrics differ" in " ".join(result.stdout.split())
    assert "trainer.max_epochs=1" in read.read_overrides(new_run(tmp_path))


@pytest.mark.slow
def test_a_config_naming_outside_code_is_refused_by_reproduce_and_resume(original, tmp_path,
                                                                          capsys):
    evil = tmp_path / "evil"
    shutil.copytree(original, evil)
    marker = tmp_path / "code-ran"
    overrides = [*OmegaConf.load(evil / runs.OVERRIDES_FILE),
                 "+callbacks.evil._target_=pathlib.Path.touch", f"+callbacks.evil.self={marker}"]
    OmegaConf.save(OmegaConf.create(overrides), evil / runs.OVERRIDES_FILE)

    assert reproduce.main([str(evil)]) == 2
    error = capsys.readouterr().err
    assert "callbacks.evil._target_=pathlib.Path.touch" in error and "--trust" in error
    result = run_cli([f"resume={evil}"], tmp_path)
    assert result.returncode == 2
    assert "callbacks.evil._target_=pathlib.Path.touch" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists() and not (tmp_path / "outputs").exists()
    assert json.loads((evil / "run.json").read_text()) == json.loads(
        (original / "run.json").read_text())


def test_reproduce_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert reproduce.main([str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_the_comparison_counts_differences_but_not_time():
    rows, differ = reproduce.compare({"test/acc": 0.5, "time/total_s": 3.0, "epochs": 2},
                                     {"test/acc": 0.5, "time/total_s": 4.0, "epochs": 3})
    assert differ == 1
    assert [r[3] for r in rows] == ["=", "+1", "+1"]
