"""The command line as a user runs it: a subprocess per command, run folders on disk."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli, single_run_dir


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """`python -m resnet_exp` with no arguments: ResNet-20 on the embedded digits."""
    cwd = tmp_path_factory.mktemp("default")
    result = run_cli([], cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, single_run_dir(cwd)


@pytest.mark.slow
def test_default_run_learns_the_digits(default_run):
    _, run = default_run
    metrics = json.loads((run / "metrics.json").read_text())
    # 10 classes: chance is 0.10; a broken pipeline (labels shuffled, no gradient, wrong
    # normalisation) stays far below this bar.
    assert metrics["test/acc"] >= 0.90, metrics
    assert metrics["test_last/acc"] >= 0.85, metrics
    assert 0 <= metrics["best_epoch"] < metrics["epochs"] + 1


@pytest.mark.slow
def test_default_run_leaves_a_self_describing_folder(default_run):
    result, run = default_run
    assert run.parent.name == "runs" and run.name.endswith("_resnet20_digits")
    for path in (".hydra/config.yaml", ".hydra/overrides.yaml", "metrics.json", "run.json",
                 "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (run / path).is_file(), path
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished"
    for key in ("start_time", "end_time", "git", "packages", "device", "seed", "command"):
        assert info[key] is not None, key
    assert info["packages"]["torch"]
    # The rich console output: config tree first, summary table last.
    assert "config" in result.stdout and "model" in result.stdout
    assert "test/acc" in result.stdout and str(run.name) in result.stdout.replace("\n", "")


@pytest.mark.slow
def test_tensorboard_has_scalars_and_hparams(default_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run = default_run
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("train/loss_epoch", "train/acc", "val/acc", "val/loss", "test/acc",
                "test_last/acc", "lr-SGD", "time/images_per_s", "time/epoch_s"):
        assert tag in scalars, (tag, sorted(scalars))
    assert "_hparams_/session_start_info" in events.summary_metadata


def test_help_lists_groups_and_examples(tmp_path):
    result = run_cli(["--help"], tmp_path)
    assert result.returncode == 0
    for text in ("model:", "data:", "optimizer:", "resnet56", "cifar10", "python -m resnet_exp -m"):
        assert text in result.stdout, text
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_sweep_makes_one_folder_per_job(smoke_sweep):
    jobs = sorted(p for p in smoke_sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    seen = set()
    for job in jobs:
        assert json.loads((job / "run.json").read_text())["status"] == "finished"
        overrides = (job / ".hydra" / "overrides.yaml").read_text()
        seen.add(tuple(line for line in overrides.splitlines()
                       if "model.residual=" in line or "seed=" in line))
    assert len(seen) == 4


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model=resnet99"], ["model/resnet99", "resnet56"]),
        (["foo=1"], ["foo"]),
        (["optimizer.lr=abc"], ["optimizer", "optimizer.lr=abc"]),
        (["model.in_channels=3"], ["cannot take", "1x8x8"]),
    ],
    ids=["unknown-option", "unknown-key", "wrong-type", "wrong-input-shape"],
)
def test_bad_input_gives_a_short_message(tmp_path, args, expected):
    result = run_cli([*args, "trainer=smoke"], tmp_path)
    assert result.returncode != 0
    for text in expected:
        assert text in result.stderr, (text, result.stderr[-2000:])
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_missing_dataset_says_where_and_how_and_never_looks_finished(tmp_path):
    result = run_cli(["data=cifar10", f"data.root={tmp_path / 'nowhere'}", "trainer=smoke"],
                     tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(tmp_path / "nowhere") in result.stderr and "data.download=true" in result.stderr
    run = single_run_dir(tmp_path)
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    assert not (run / "metrics.json").exists()
