"""module.ema_decay: the average equals one computed by hand, is evaluated beside the weights,
and a run resumed from a checkpoint ends with exactly the average of one that never stopped."""

from __future__ import annotations

import functools

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from resnet_exp.core.errors import UserError
from resnet_exp.training.module import Classifier


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def loader() -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(24, 3, 8, 8, generator=g), torch.randint(0, 3, (24,), generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


def classifier(**ema) -> Classifier:
    return Classifier(net(), 3, optimizer=functools.partial(torch.optim.SGD, lr=0.5), **ema)


def trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, **kwargs)


class Weights(pl.Callback):
    """The weights and BN statistics after each optimizer step (callbacks run before the
    module's own on_train_batch_end, where the average moves)."""

    def __init__(self):
        self.seen = []

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.seen.append({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()
                          if v.dtype.is_floating_point})


@pytest.mark.parametrize(("every", "warmup", "expected"), [
    (1, 0, lambda w: 0.25 * w[0] + 0.25 * w[1] + 0.5 * w[2]),  # a copy, then two updates
    (2, 0, lambda w: w[1]),                    # one update, at step 2: a copy
    (1, 2, lambda w: 0.5 * w[1] + 0.5 * w[2]),  # copies until step 2, then one average
], ids=["every-step", "every-2", "warm-up"])
def test_the_average_is_the_one_computed_by_hand(every, warmup, expected):
    module = classifier(ema_decay=0.5, ema_every_n_steps=every, ema_warmup_steps=warmup)
    weights = Weights()
    trainer(max_steps=3, callbacks=[weights]).fit(module, loader())
    averaged = module.ema.average.module.state_dict()
    for key in weights.seen[0]:
        hand = expected([w[key] for w in weights.seen])
        torch.testing.assert_close(averaged[key], hand, rtol=1e-6, atol=1e-7)


def test_validation_and_test_report_the_average_beside_the_weights():
    module = classifier(ema_decay=0.9)
    t = trainer(max_epochs=2)
    t.fit(module, loader(), loader())
    assert {"val/acc", "val/acc_ema", "val/loss_ema"} <= set(t.logged_metrics)
    (result,) = t.test(module, loader(), verbose=False)
    assert {"test/acc", "test/acc_ema", "test/loss_ema"} <= set(result)
    assert result["test/loss_ema"] != result["test/loss"]  # another set of weights


def test_a_resumed_run_ends_with_exactly_the_average_of_one_that_never_stopped(tmp_path):
    ema = {"ema_decay": 0.7, "ema_every_n_steps": 2}
    straight = classifier(**ema)
    trainer(max_epochs=2).fit(straight, loader())

    first = classifier(**ema)
    t = trainer(max_epochs=1)
    t.fit(first, loader())
    t.save_checkpoint(tmp_path / "epoch1.ckpt")
    resumed = classifier(**ema)
    trainer(max_epochs=2).fit(resumed, loader(), ckpt_path=tmp_path / "epoch1.ckpt",
                              weights_only=True)
    for key, value in straight.ema.state_dict().items():
        assert torch.equal(resumed.ema.state_dict()[key], value), key


def test_a_decay_outside_0_1_is_refused():
    with pytest.raises(UserError, match="between 0 and 1"):
        classifier(ema_decay=1.5)


def test_a_module_with_an_average_pickles_as_ddp_spawn_sends_it_to_each_process():
    import pickle

    module = classifier(ema_decay=0.5)
    copy = pickle.loads(pickle.dumps(module))
    trainer(max_epochs=1).fit(copy, train_dataloaders=loader())
    assert copy.ema.average.n_averaged.item() == 3  # 24 images, batches of 8: 3 updates
