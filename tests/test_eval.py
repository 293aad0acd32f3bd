"""`python -m resnet_exp.eval RUN_DIR`: a run's checkpoint tested again gives exactly the test
metrics and figures the run recorded; other data by override; each bad input its message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from omegaconf import OmegaConf

from resnet_exp import eval as evaluate
from resnet_exp import runs

TEST_KEYS = ("loss", "acc", "acc_top5")


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def run(smoke_run_copy) -> Path:
    """The shared run, copied: evaluations write into RUN_DIR/eval/."""
    return smoke_run_copy


def eval_folders(run: Path) -> list[Path]:
    return sorted((run / "eval").iterdir()) if (run / "eval").is_dir() else []


@pytest.mark.slow
def test_eval_of_the_best_checkpoint_gives_the_recorded_test_metrics_and_figures(run, tmp_path):
    done = run_cli([str(run)], tmp_path, timeout=300, module="resnet_exp.eval")
    assert done.returncode == 0, done.stderr[-3000:]
    (out,) = eval_folders(run)
    recorded = json.loads((run / "metrics.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    for key in TEST_KEYS:
        assert metrics[f"test/{key}"] == recorded[f"test/{key}"], key
    assert metrics["test/per_class"] == recorded["test/per_class"]
    assert metrics["checkpoint_epoch"] == recorded["best_epoch"]
    assert (out / "figures" / "confusion_matrix.png").stat().st_size > 1000
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished" and info["evaluates"] == str(run.resolve())
    assert info["checkpoint"].endswith("best.ckpt")
    assert OmegaConf.load(out / runs.CONFIG_FILE).trainer.max_epochs == 2
    assert "test/acc" in done.stdout and f"eval folder: {out}" in done.stdout


@pytest.mark.slow
def test_eval_of_the_last_checkpoint_gives_the_recorded_test_last_metrics(run, one_thread):
    before = set(eval_folders(run))
    assert evaluate.main([str(run), "--last"]) == 0
    (out,) = set(eval_folders(run)) - before
    recorded = json.loads((run / "metrics.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    for key in TEST_KEYS:
        assert metrics[f"test_last/{key}"] == recorded[f"test_last/{key}"], key
    assert metrics["checkpoint_epoch"] == recorded["epochs"]  # the last, counted from 1


@pytest.mark.slow
def test_eval_on_another_dataset_by_override(run, one_thread):
    before = set(eval_folders(run))
    assert evaluate.main([str(run), "data=synthetic", "data.in_channels=1",
                          "data.image_size=8"]) == 0
    (out,) = set(eval_folders(run)) - before
    assert out.name.endswith("_synthetic")
    metrics = json.loads((out / "metrics.json").read_text())
    # a digits model on random templates: about chance (10 classes), far below its digits score
    assert metrics["test/acc"] < 0.5
    assert OmegaConf.load(out / runs.CONFIG_FILE).data._target_.endswith("Synthetic")


@pytest.mark.slow
def test_eval_errors_say_what_is_wrong(run, tmp_path, capsys, one_thread):
    def error(*argv) -> str:
        assert evaluate.main([*map(str, argv)]) == 2
        return capsys.readouterr().err

    assert "not a run folder" in error(tmp_path)
    assert "holds the weights of a different model" in error(run, "model=resnet32")
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("eval"))
    best = copy / "checkpoints" / "best.ckpt"
    best.write_bytes(best.read_bytes()[:1000])
    assert "is corrupt or truncated" in error(copy)
    (copy / "checkpoints" / "last.ckpt").unlink()
    assert "last.ckpt does not exist" in error(copy, "--last")
    overrides = OmegaConf.load(copy / runs.OVERRIDES_FILE)
    OmegaConf.save(OmegaConf.create([*overrides, "+callbacks.evil._target_=os.system"]),
                   copy / runs.OVERRIDES_FILE)
    assert "refusing the config" in error(copy)
