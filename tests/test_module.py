"""The LightningModule and its collaborators: parameter groups, the epoch's metrics, optimizer and
scheduler, the test's name."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from resnet_exp.training.metrics import count_parameters
from resnet_exp.training.module import Classifier
from resnet_exp.training.param_groups import ParamGroups


def small_net(num_classes=3):
    return nn.Sequential(nn.Conv2d(1, 4, 3, bias=True), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))


def test_bn_and_bias_excluded_from_weight_decay_when_asked():
    net = small_net()
    (everything,) = ParamGroups(weight_decay_bn_bias=True)(net)
    assert len(everything["params"]) == 6
    decay, no_decay = ParamGroups(weight_decay_bn_bias=False)(net)
    # Decayed: the conv and linear weights. Not: conv bias, BN weight and bias, linear bias.
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[5].weight)}
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0
    opt = torch.optim.SGD(ParamGroups(False)(net), lr=0.1, weight_decay=1e-4)
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]


def test_parameter_counts_follow_requires_grad():
    net = small_net()
    net[0].weight.requires_grad_(False)
    counts = count_parameters(net)
    assert counts["params/total"] == 36 + 4 + 8 + 15
    assert counts["params/trainable"] == counts["params/total"] - 36


@pytest.mark.parametrize(("num_classes", "has_top5"), [(3, False), (10, True)])
def test_top5_only_from_ten_classes(num_classes, has_top5):
    module = Classifier(small_net(num_classes), num_classes,
                        optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    assert ("acc_top5" in module.metrics["val_metrics"]) is has_top5


def test_scheduler_dict_is_completed_with_the_optimizer():
    module = Classifier(
        small_net(), 3, optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        scheduler={"scheduler": functools.partial(torch.optim.lr_scheduler.StepLR, step_size=2),
                   "interval": "step", "frequency": 1, "monitor": "val/acc"},
    )
    config = module.configure_optimizers()
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert config["lr_scheduler"]["interval"] == "step"
    assert config["lr_scheduler"]["scheduler"].optimizer is config["optimizer"]
    assert config["lr_scheduler"]["name"] == "lr"  # LearningRateMonitor's tag


def test_a_constant_rate_keeps_the_rate_and_is_logged_as_lr_whatever_the_optimizer():
    for optimizer in (torch.optim.SGD, torch.optim.Adam):
        module = Classifier(small_net(), 3, optimizer=functools.partial(optimizer, lr=0.1),
                            scheduler={"scheduler": None, "interval": "epoch"})
        config = module.configure_optimizers()
        assert config["lr_scheduler"]["name"] == "lr"
        for _ in range(3):
            config["lr_scheduler"]["scheduler"].step()
        assert config["optimizer"].param_groups[0]["lr"] == pytest.approx(0.1)


def test_the_progress_bar_shows_each_epochs_own_train_numbers(tmp_path):
    """Beside "Epoch N" the bar must show epoch N's train loss and accuracy, as logged: Lightning
    refreshes the bar when validation ends and at the train epoch's end, before the module's
    on_train_epoch_end hook, so numbers logged in that hook appeared one epoch late."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    class Shown(pl.Callback):
        def __init__(self):
            self.shown = []

        def on_train_epoch_end(self, trainer, pl_module):  # the bar's last refresh of the epoch
            self.shown.append({k: float(v) for k, v in trainer.progress_bar_metrics.items()
                               if k.startswith("train/")})

    torch.manual_seed(0)
    x, y = torch.randn(48, 8), torch.randint(0, 3, (48,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    net = nn.Sequential(nn.Linear(8, 3))
    module = Classifier(net, 3, optimizer=functools.partial(torch.optim.SGD, lr=0.5))
    shown = Shown()
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", callbacks=[shown],
                         logger=CSVLogger(tmp_path, name="", version=""), num_sanity_val_steps=0,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, log_every_n_steps=1)
    trainer.fit(module, loader, loader)
    import csv
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    logged = [{k: float(r[k]) for k in ("train/loss", "train/acc")}
              for r in rows if r.get("train/acc")]
    assert len(logged) == 3
    assert [{k: s[k] for k in ("train/loss", "train/acc")} for s in shown.shown] == \
        [pytest.approx(epoch) for epoch in logged]
    assert len({e["train/loss"] for e in logged}) == 3  # three different epochs, not one value


def test_a_shared_parameter_lands_in_one_group_and_declared_scales_in_their_own():
    tied = nn.Sequential(small_net(), nn.Linear(3, 3), nn.Linear(3, 3))
    tied[2].weight = tied[1].weight  # one parameter in two modules, as tied embeddings are
    tied.lr_scales = {"0.0": 0.5}  # the conv in front learns at half the rate
    groups = ParamGroups(weight_decay_bn_bias=False)(tied)
    params = [id(p) for g in groups for p in g["params"]]
    assert len(params) == len(set(params)) == len(list(tied.parameters()))
    scaled = [g for g in groups if "lr_scale" in g]
    assert {id(p) for g in scaled for p in g["params"]} == {id(tied[0][0].weight),
                                                           id(tied[0][0].bias)}
    opt = ParamGroups().optimizer(functools.partial(torch.optim.SGD, lr=0.2), tied)
    assert sorted(g["lr"] for g in opt.param_groups) == [0.1, 0.2]


def test_epoch_metrics_equal_torchmetrics_over_unequal_batches():
    """Loss per image and top-1/top-5 accuracy, against torchmetrics' own classes fed the same
    batches (the last one short)."""
    from torchmetrics import MeanMetric
    from torchmetrics.classification import MulticlassAccuracy

    from resnet_exp.training.metrics import StageMetrics

    g = torch.Generator().manual_seed(0)
    ours = StageMetrics(topk=(1, 5))
    theirs = {"loss": MeanMetric(), "acc": MulticlassAccuracy(10, average="micro"),
              "acc_top5": MulticlassAccuracy(10, top_k=5, average="micro")}
    for size in (32, 32, 7):
        logits, y = torch.randn(size, 10, generator=g), torch.randint(0, 10, (size,), generator=g)
        loss = nn.functional.cross_entropy(logits, y)
        ours.add(loss, logits, y)
        theirs["loss"].update(loss, weight=size)
        theirs["acc"].update(logits, y)
        theirs["acc_top5"].update(logits, y)
    for name, metric in ours.items():
        torch.testing.assert_close(metric.compute(), theirs[name].compute(), rtol=1e-6, atol=0)


def test_an_epoch_resumed_from_its_partial_sums_ends_with_the_whole_epochs_numbers():
    from resnet_exp.training.metrics import StageMetrics

    g = torch.Generator().manual_seed(1)
    batches = [(torch.rand(()), torch.randn(8, 3, generator=g), torch.randint(0, 3, (8,)))
               for _ in range(4)]
    whole, before, after = StageMetrics(), StageMetrics(), StageMetrics()
    for batch in batches:
        whole.add(*batch)
    for batch in batches[:2]:
        before.add(*batch)
    sums = before.partial_sums()
    after.resume(sums)
    for batch in batches[2:]:
        after.add(*batch)
    assert {k: m.compute() for k, m in after.items()} == {k: m.compute() for k, m in whole.items()}
    # sums another version wrote (torchmetrics' state names) are left out, not an error
    fresh = StageMetrics()
    fresh.resume({"loss": {"mean_value": torch.tensor(3.0), "weight": torch.tensor(2.0)}})
    fresh.add(*batches[0])
    assert fresh["acc"].images == 8


def test_the_last_checkpoints_test_is_logged_under_its_own_name():
    import pytorch_lightning as pl

    x, y = torch.randn(12, 1, 6, 6), torch.arange(12) % 3
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=6)
    module = Classifier(small_net(), 3, optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    with module.tested_as("test_last"):
        (last,) = trainer.test(module, loader, verbose=False)
    (best,) = trainer.test(module, loader, verbose=False)
    assert set(last) == {"test_last/loss", "test_last/acc"}
    assert set(best) == {"test/loss", "test/acc"} and module.test_prefix == "test"
    assert last["test_last/acc"] == best["test/acc"]  # the same weights
