"""The command line as a user runs it: what only a process shows (its exit status, stdout and
stderr: conftest.run_cli), and the options it documents, trained in this process through the
Python API (resnet_exp.run); run folders on disk."""

from __future__ import annotations

import json

import pytest
from conftest import job_dirs, refusal, run_cli, single_run_dir

import resnet_exp
from resnet_exp.core.errors import UserError


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """`python -m resnet_exp` with no arguments: ResNet-20 on the embedded digits."""
    cwd = tmp_path_factory.mktemp("default")
    result = run_cli([], cwd)  # the README's command, imports and all
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
    assert 1 <= metrics["best_epoch"] <= metrics["epochs"]  # counted from 1, as printed


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
def test_a_piped_run_prints_its_config_a_line_per_epoch_and_no_third_party_noise(default_run):
    """What a user sees in a log file: no warning they cannot act on, no live-bar redraws, each
    epoch once with its own numbers (the last one included), the model's FLOPs counted."""
    result, run = default_run
    for noise in ("LeafSpec", "log_every_n_steps", "Tip:", "weights_only", "Warning"):
        assert noise not in result.stderr, (noise, result.stderr[-2000:])
    epochs = json.loads((run / "metrics.json").read_text())["epochs"]
    lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == [f"{e}/{epochs}" for e in range(1, epochs + 1)]
    final = json.loads((run / "metrics.json").read_text())
    last = dict(zip(lines[-1].split()[2::2], lines[-1].split()[3::2], strict=False))
    assert float(last["train/acc"]) == pytest.approx(final["final/train/acc"], abs=1e-4)
    assert float(last["val/acc"]) == pytest.approx(final["final/val/acc"], abs=1e-4)
    assert "Epoch 0/" not in result.stdout and "━━━━ " not in result.stdout
    flops = [line for line in result.stdout.splitlines() if "Total Flops" in line]
    assert flops and not flops[0].strip().startswith("0 "), flops


@pytest.mark.slow
def test_tensorboard_has_scalars_and_hparams(default_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run = default_run
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("train/loss", "train/acc", "val/acc", "val/loss", "test/acc",
                "test_last/acc", "lr", "time/images_per_s", "time/epoch_s"):
        assert tag in scalars, (tag, sorted(scalars))
    assert "_hparams_/session_start_info" in events.summary_metadata


def test_help_lists_groups_and_examples(tmp_path):
    result = run_cli(["--help"], tmp_path)
    assert result.returncode == 0
    for text in ("model:", "data:", "optimizer:", "resnet56", "cifar10", "python -m resnet_exp -m"):
        assert text in result.stdout, text
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_each_job_of_a_sweep_prints_its_groups_and_overrides_not_the_whole_tree(smoke_sweep):
    out = (smoke_sweep.parent / "sweep.stdout").read_text()
    assert "├── " not in out  # no config tree
    overrides = [line for line in out.splitlines() if line.startswith("overrides: ")]
    assert len(overrides) == 4 and len(set(overrides)) == 4, overrides
    assert all("model.residual=" in line and "seed=" in line for line in overrides)
    configs = [line for line in out.splitlines() if line.startswith("config: ")]
    assert len(configs) == 4 and all(" model=vgg08 " in line for line in configs), configs


@pytest.mark.slow
def test_sweep_makes_one_folder_per_job(smoke_sweep):
    jobs = job_dirs(smoke_sweep)
    # named by job number and overrides, each key cut to its last part (TensorBoard's run list)
    assert [p.name for p in jobs] == [
        f"{i}_callbacks=study,residual={r},model=vgg08,seed={s},trainer=smoke"
        for i, (r, s) in enumerate([("False", 1), ("False", 2), ("True", 1), ("True", 2)])]
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
        (["extras.print_config=tree"], ["extras.print_config=tree", "full, groups, none"]),
    ],
    ids=["unknown-option", "unknown-key", "print-config"],
)
def test_bad_input_gives_a_short_message(tmp_path, args, expected):
    """Answered before torch loads (Hydra's composition, the run's settings check)."""
    result = run_cli([*args, "trainer=smoke"], tmp_path)
    assert result.returncode != 0
    for text in expected:
        assert text in result.stderr, (text, result.stderr[-2000:])
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["optimizer.lr=abc"], ["optimizer", "optimizer.lr=abc"]),
        (["model.in_channels=3"], ["cannot take", "1x8x8"]),
    ],
    ids=["wrong-type", "wrong-input-shape"],
)
def test_a_value_the_run_cannot_build_gives_a_short_message(in_tmp, capsys, args, expected):
    """Found by building the run's parts (torch): in this process, as the CLI would end."""
    line = refusal(capsys, [*args, "trainer=smoke"])
    for text in expected:
        assert text in line, (text, line)


@pytest.mark.slow
def test_missing_dataset_says_where_and_how_and_never_looks_finished(in_tmp):
    with pytest.raises(UserError) as error:  # the CLI prints it as one line, status 2
        resnet_exp.run(["data=cifar10", f"data.root={in_tmp / 'nowhere'}", "trainer=smoke"])
    assert str(in_tmp / "nowhere") in str(error.value) and "data.download=true" in str(error.value)
    run = single_run_dir(in_tmp)
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    assert not (run / "metrics.json").exists()


@pytest.mark.slow
def test_early_stopping_is_off_by_default_and_stops_a_run_that_stopped_improving(in_tmp):
    # an improvement must be over 0.5 of accuracy: after the first validation none is
    run = resnet_exp.run(["trainer=smoke", "trainer.max_epochs=6", "name=stopped",
                          "callbacks.early_stopping.patience=2",
                          "callbacks.early_stopping.min_delta=0.5"])
    assert run.status == "finished" and run.dir == single_run_dir(in_tmp)
    metrics = json.loads((run.dir / "metrics.json").read_text())
    assert metrics["epochs"] == 3  # the first epoch, then 2 without improvement
    assert "test/acc" in metrics  # the final test ran as always


@pytest.mark.slow
def test_debug_runs_go_to_their_own_folder_and_the_profiler_prints_its_report(in_tmp, capsys):
    assert resnet_exp.run(["debug=profiler", "trainer=smoke"]).status == "finished"
    (run,) = (in_tmp / "outputs" / "debug").iterdir()
    assert not (in_tmp / "outputs" / "runs").exists()
    out = capsys.readouterr().out
    assert "Profiler Report" in out and "run_training_epoch" in out
    assert (run / "fit-profile.txt").is_file()


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_the_version_names_resnet_exp_and_its_stack(tmp_path, flag):
    from importlib.metadata import version

    result = run_cli([flag], tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr[-2000:]
    assert result.stdout.strip() == (
        f"resnet-exp {version('resnet-exp')} (torch {version('torch')}, torchvision "
        f"{version('torchvision')}, pytorch-lightning {version('pytorch-lightning')}, "
        f"hydra-core {version('hydra-core')})")
