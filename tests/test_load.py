"""runs/load.py, the one loader of trained runs (eval, analyze, the Python API): a run's config
composed again, its parts built for a test, the chosen checkpoint's weights in its module, its
metrics; and nothing written anywhere by loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resnet_exp.runs import read
from resnet_exp.runs.load import load
from resnet_exp.training import checkpoints


def files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.mark.slow
def test_a_run_loads_with_its_checkpoints_weights_and_nothing_is_written(smoke_run, tmp_path):
    before = files(smoke_run)
    recorded = read.read_metrics(smoke_run)

    best = load(smoke_run)
    assert best.checkpoint == smoke_run / "checkpoints" / "best.ckpt"
    assert best.epoch == recorded["best_epoch"] and best.metrics == recorded
    saved = checkpoints.load(best.checkpoint)["state_dict"]
    for key, tensor in best.parts.module.state_dict().items():
        assert torch.equal(tensor, saved[key]), key
    assert best.model is best.parts.model and not best.model.training
    assert "hydra" in best.cfg and "hydra" not in best.task
    assert best.context.run_dir == smoke_run  # where its parts would write, if used

    out = tmp_path / "elsewhere"
    last = load(smoke_run, smoke_run / "checkpoints" / "last.ckpt", ["data.batch_size=16"],
                output_dir=out)
    assert last.epoch == recorded["epochs"] and last.context.run_dir == out  # counted from 1
    assert last.task.data.batch_size == 16 and "data.batch_size=16" in last.overrides
    saved = checkpoints.load(last.checkpoint)["state_dict"]
    assert all(torch.equal(t, saved[k]) for k, t in last.parts.module.state_dict().items())
    assert files(smoke_run) == before and not out.exists()
