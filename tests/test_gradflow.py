"""Gradient flow: the numbers against a hand computation, and vanishing gradients in a real run."""

from __future__ import annotations

import csv
import functools
import json

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import job_dirs, run_cli
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from resnet_exp import runs
from resnet_exp.callbacks.gradflow import GradientFlow, weight_layers
from resnet_exp.runs import read
from resnet_exp.training.module import Classifier


def hand_gradients(w1, w2, x, y):
    """Cross-entropy through two bias-free linear layers, by the chain rule in NumPy:
    z1 = x W1^T, z2 = z1 W2^T, dL/dz2 = (softmax(z2) - onehot(y)) / N."""
    z1 = x @ w1.T
    z2 = z1 @ w2.T
    p = np.exp(z2 - z2.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz2 = (p - np.eye(w2.shape[0])[y]) / len(y)
    dw2 = dz2.T @ z1
    dw1 = (dz2 @ w2).T @ x
    return dw1, dw2


def test_numbers_match_a_hand_computation(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 5, bias=False), nn.Linear(5, 3, bias=False))
    x = torch.randn(8, 1, 2, 2)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 2, 1])
    loader = DataLoader(TensorDataset(x, y), batch_size=4)  # two steps, different batches
    # lr 0: the weights stay put, so each step's gradient has a closed form at the same weights
    module = Classifier(net, 3, optimizer=functools.partial(torch.optim.SGD, lr=0.0))
    callback = GradientFlow(every_n_steps=1, output_dir=str(tmp_path))
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, callbacks=[callback],
                         logger=TensorBoardLogger(tmp_path, name="tensorboard", version=""),
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module, train_dataloaders=loader)

    w1, w2 = (net[i].weight.detach().numpy().astype(np.float64) for i in (1, 2))
    xs, ys = x.flatten(1).numpy().astype(np.float64), y.numpy()
    steps = [hand_gradients(w1, w2, xs[i:i + 4], ys[i:i + 4]) for i in (0, 4)]
    per_step = [[(np.abs(g).mean(), np.linalg.norm(g)) for g in grads] for grads in steps]

    with open(tmp_path / runs.GRADIENT_FLOW_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["layer"] for r in rows] == ["1", "2"]  # depth order, module names
    for i, row in enumerate(rows):
        expected_mean = np.mean([s[i][0] for s in per_step])  # the epoch's average of 2 steps
        expected_l2 = np.mean([s[i][1] for s in per_step])
        assert float(row["mean_abs_grad"]) == pytest.approx(expected_mean, rel=1e-5)
        assert float(row["grad_l2_norm"]) == pytest.approx(expected_l2, rel=1e-5)
        assert row["steps"] == "2" and row["epoch"] == "0"

    # every step (every_n_steps=1) in its own event file, tags in depth order
    events = EventAccumulator(str(tmp_path / runs.GRADIENT_FLOW_EVENTS_DIR)).Reload()
    for i, name in enumerate(["1", "2"]):
        for kind, k in (("mean_abs", 0), ("l2_norm", 1)):
            logged = events.Scalars(f"gradient_flow/{kind}/{i:03d}_{name}")
            assert [e.step for e in logged] == [0, 1]
            for event, step in zip(logged, per_step, strict=True):
                assert event.value == pytest.approx(step[i][k], rel=1e-5)
    main = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    assert "gradient_flow" in main.Tags()["images"]
    assert not any(t.startswith("gradient_flow/") for t in main.Tags()["scalars"])
    assert (tmp_path / runs.FIGURES_DIR / "gradient_flow.png").stat().st_size > 10_000


def _fit(tmp_path, epochs: int, ckpt_path=None) -> GradientFlow:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False))
    loader = DataLoader(TensorDataset(torch.randn(8, 1, 2, 2), torch.arange(8) % 3), batch_size=4)
    module = Classifier(net, 3, optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    callback = GradientFlow(output_dir=str(tmp_path))
    checkpoint = pl.callbacks.ModelCheckpoint(tmp_path / "checkpoints", save_last=True)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=epochs, callbacks=[callback, checkpoint],
                         logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt_path, weights_only=True)
    return callback


def test_a_resumed_run_keeps_the_epochs_it_trained_before(tmp_path):
    # Lightning restores the epoch after on_fit_start: read there, it was 0, and a run resumed
    # after its last epoch (killed before its test) reported no gradient_flow/first_to_last;
    # the epochs before came back from the CSV, rounded, and without their L2 norms
    first = _fit(tmp_path, epochs=2)
    last = tmp_path / "checkpoints" / "last.ckpt"
    after_the_end = _fit(tmp_path, epochs=2, ckpt_path=last)
    assert sorted(after_the_end.history) == [0, 1]
    assert after_the_end.results() == first.results()  # exact: the checkpoint carries them
    one_more = _fit(tmp_path, epochs=3, ckpt_path=last)
    assert sorted(one_more.history) == [0, 1, 2]
    assert {e: one_more.history[e] for e in (0, 1)} == first.history  # the L2 norms too


def test_frozen_layers_are_left_out():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3))
    net[0].weight.requires_grad_(False)
    assert [name for name, _ in weight_layers(net)] == ["3"]


@pytest.fixture(scope="module")
def vgg_twins(tmp_path_factory):
    """Plain VGG38 (no BN, no shortcuts) and its residual+BN twin (`model=vgg`: depth 38), a few
    steps each on the digits, in one sweep."""
    cwd = tmp_path_factory.mktemp("vgg")
    result = run_cli(["-m", "model=vgg38,vgg", "trainer=smoke", "callbacks=study",
                      "callbacks.progress_bar=null", "callbacks.gradient_flow.every_n_steps=1"],
                     cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (cwd / "outputs" / "multirun").iterdir()
    return {json.loads((job / "run.json").read_text())["overrides"][0]: job
            for job in job_dirs(sweep)}


@pytest.mark.slow
def test_plain_vgg38_gradients_vanish_and_its_residual_bn_twin_s_do_not(vgg_twins):
    ratios = {}
    for override, run in vgg_twins.items():
        layers, epochs = read.read_gradient_flow(run / runs.GRADIENT_FLOW_FILE)
        assert len(layers) == 38 and layers[0] == "conv1" and layers[-1] == "fc"
        first, last = epochs[0][0], epochs[0][-1]
        ratios[override] = first / last
    print(f"first-layer / last-layer mean |gradient|: {ratios}")
    # Measured: 1.2e-17 for the plain net (Arenas López's VGG38 plot), 0.24 with BN and shortcuts.
    assert ratios["model=vgg38"] < 1e-8, ratios
    assert ratios["model=vgg"] > 1e-2, ratios
    for run in vgg_twins.values():
        assert (run / runs.FIGURES_DIR / "gradient_flow.png").is_file()
        assert (run / runs.GRADIENT_FLOW_EVENTS_DIR).is_dir()
