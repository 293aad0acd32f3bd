"""The speed options change the speed, not the answers; the training step logs without waiting
on the device; a bf16 run on a device that emulates bf16 says so (resnet_exp/training/speed.py).
The figures themselves come from `scripts/bench.py`, not from tests."""

from __future__ import annotations

import functools
import warnings

import pytest
import pytorch_lightning as pl
import torch
from conftest import run_cli
from hydra.core.global_hydra import GlobalHydra
from test_experiments import CIFAR10, image_folder
from torch import nn

from resnet_exp import runs
from resnet_exp.data import Digits
from resnet_exp.data.order import DeviceBatches, EpochShuffle, IndexedTensors, collate_fn
from resnet_exp.runs import read
from resnet_exp.runs.context import RunContext
from resnet_exp.train import train
from resnet_exp.training import speed
from resnet_exp.training.module import Classifier


def small_net(in_channels: int = 3) -> nn.Module:
    """The same weights at every call."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10))


def classifier(net: nn.Module, **options) -> Classifier:
    return Classifier(net, 10, optimizer=functools.partial(torch.optim.SGD, lr=0.1), **options)


def outputs(module: Classifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits in evaluation mode, and the gradient of the first conv after one training loss."""
    module.eval()
    with torch.inference_mode():
        logits = module(x)
    module.train()
    module.zero_grad()
    nn.functional.cross_entropy(module(x), torch.arange(len(x)) % 10).backward()
    return logits, module.model[0].weight.grad.clone()


def test_channels_last_gives_the_same_logits_and_gradients():
    x = torch.randn(6, 3, 12, 12)
    plain = classifier(small_net())
    fast = classifier(small_net(), channels_last=True)
    assert fast.model[0].weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(outputs(plain, x), outputs(fast, x), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("device", "precision", "pays"), [
    ("cpu", "32-true", True), ("cpu", "bf16-mixed", True), ("cuda", "32-true", False),
    ("cuda", "bf16-mixed", True), ("cuda", "16-mixed", True), ("mps", "32-true", False)])
def test_channels_last_auto_is_on_where_it_pays(device, precision, pays):
    assert speed.channels_last_pays(torch.device(device), precision) is pays


def test_channels_last_auto_is_decided_when_training_starts_on_the_device():
    import pytorch_lightning as pl

    x, y = torch.randn(8, 3, 12, 12), torch.arange(8) % 10
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    for setting, nhwc in (("auto", True), (False, False)):
        module = classifier(small_net(), channels_last=setting)
        assert not module.layout.on  # nothing known yet: no device
        pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False).fit(module, loader)
        assert module.layout.on is nhwc
        assert module.model[0].weight.is_contiguous(memory_format=torch.channels_last) is nhwc


@pytest.mark.slow
def test_compile_gives_the_same_logits_and_keeps_checkpoint_keys():
    x = torch.randn(6, 3, 12, 12)
    plain = classifier(small_net())
    before = speed.compile_seconds()
    compiled = classifier(small_net(), compile=True)
    compiled.eval()
    with torch.inference_mode():
        logits = compiled(x)
    plain.eval()
    with torch.inference_mode():
        torch.testing.assert_close(logits, plain(x), atol=1e-5, rtol=1e-4)
    assert speed.compile_seconds() > before, "the compile time a run reports as time/compile_s"
    # compiled in place: best.ckpt of a compiled run loads into a plain model and back
    assert list(compiled.state_dict()) == list(plain.state_dict())
    assert not any("_orig_mod" in key for key in compiled.state_dict())


def test_epoch_metrics_do_not_depend_on_the_eval_batch_size(tmp_path):
    """The loss and accuracy accumulated on the device over unequal batches (the last one is
    short) are the exact means over the validation set, at any eval batch size."""
    results = []
    for eval_batch_size in (7, 64, 180):
        data = Digits(num_classes=10, in_channels=1, image_size=8, mean=[0.3], std=[0.4],
                      batch_size=32, eval_batch_size=eval_batch_size, seed=0)
        module = classifier(small_net(in_channels=1))
        trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                             enable_model_summary=False, default_root_dir=tmp_path)
        results.append(trainer.validate(module, datamodule=data, verbose=False)[0])
    # by hand: one batch of all 180 validation images
    data.setup("fit")
    x, y = data.val_set.x[data.val_set.index], data.val_set.y[data.val_set.index]
    x, y = data.prepare_batch(x, y, train=False)
    module.eval()
    with torch.inference_mode():
        logits = module(x)
    expected = {"val/loss": nn.functional.cross_entropy(logits, y).item(),
                "val/acc": (logits.argmax(1) == y).float().mean().item()}
    for result in results:
        for key, value in expected.items():
            assert result[key] == pytest.approx(value, abs=1e-5), (key, result)


def test_device_batches_are_the_host_loaders_batches():
    """data.on_device draws the same batches as the host path, as tensors on the device (here
    the CPU, which is all the tests have: the GPU path differs only in `device`)."""
    x = torch.arange(50, dtype=torch.uint8)[:, None, None, None].expand(50, 1, 2, 2).contiguous()
    dataset = IndexedTensors(x, torch.arange(50) % 10, torch.arange(3, 50))
    host = torch.utils.data.DataLoader(dataset, batch_size=8, sampler=EpochShuffle(47, seed=1),
                                       collate_fn=collate_fn)
    device = torch.utils.data.DataLoader(
        dataset, batch_size=None, collate_fn=collate_fn,
        sampler=DeviceBatches(EpochShuffle(47, seed=1), 47, 8, torch.device("cpu")))
    for epoch in (0, 1):
        host.sampler.set_epoch(epoch)
        device.sampler.set_epoch(epoch)
        pairs = list(zip(host, device, strict=True))
        assert len(pairs) == len(device) == 6
        for (hx, hy), (dx, dy) in pairs:
            assert torch.equal(hx, dx) and torch.equal(hy, dy)
    ordered = DeviceBatches(None, 47, 20, torch.device("cpu"))
    assert [b.tolist() for b in ordered][-1] == list(range(40, 47))


def test_bf16_warns_only_where_it_is_emulated(monkeypatch):
    slow = {torch.bfloat16: 1.0, torch.float16: 1.0, torch.float32: 0.01}
    monkeypatch.setattr(speed, "_matmul_seconds", lambda dtype: slow[dtype])
    speed.is_native.cache_clear()
    cpu = torch.device("cpu")
    try:
        with pytest.warns(speed.SlowPrecisionWarning, match="bf16-mixed.*32-true"):
            assert not speed.check_precision("bf16-mixed", cpu)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert speed.check_precision("32-true", cpu)
            monkeypatch.setattr(speed, "_matmul_seconds", lambda dtype: 0.01)
            speed.is_native.cache_clear()
            assert speed.check_precision("bf16-mixed", cpu)
    finally:
        speed.is_native.cache_clear()


def test_the_probe_tells_fp32_is_native():
    assert speed.is_native(torch.float32, "cpu")


@pytest.mark.parametrize(("emulated", "expected"), [(True, False), (False, True)])
def test_the_precision_probe_holds_under_load(monkeypatch, emulated, expected):
    """Another process takes the CPU during some of the timed products (x30 slower): the
    decision is the same as on a quiet machine, for emulated bf16 (100x fp32) and native bf16
    (0.5x fp32). A fake clock: the machine's speed does not decide this test."""
    loaded = iter([30, 1, 1, 30, 30, 30, 1, 1, 30, 1] * 3)
    base = {torch.float32: 0.002, torch.bfloat16: 0.2 if emulated else 0.001}
    monkeypatch.setattr(speed, "_matmul_seconds", lambda dtype: base[dtype] * next(loaded))
    speed.is_native.cache_clear()
    try:
        assert speed.is_native(torch.bfloat16, "cpu") is expected
    finally:
        speed.is_native.cache_clear()


SYNCS = ("item", "tolist", "__bool__", "__float__", "__int__")


@pytest.mark.slow
def test_training_steps_read_nothing_back_between_logging_steps(compose_cfg, monkeypatch):
    """A value read back from the device (.item(), if tensor:, ...) makes the host wait for the
    GPU. Through the real config, only the steps Lightning logs on (every 5th here) and the
    epochs' ends may read anything: a bare loop reads nothing at all."""
    every, per_epoch = 5, 10
    cfg = compose_cfg("trainer=smoke", "trainer.max_epochs=2",
                      f"trainer.limit_train_batches={per_epoch}",
                      f"trainer.log_every_n_steps={every}")
    step = {"now": -1}
    reads: list[tuple[int, str]] = []
    original_step = Classifier.training_step

    def training_step(self, batch, batch_idx):
        step["now"] += 1
        return original_step(self, batch, batch_idx)

    monkeypatch.setattr(Classifier, "training_step", training_step)
    for name in SYNCS:
        method = getattr(torch.Tensor, name)

        def counted(self, *args, _method=method, _name=name, **kwargs):
            reads.append((step["now"], _name))
            return _method(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    try:
        train(cfg, RunContext.of(cfg.hydra))
    finally:
        GlobalHydra.instance().clear()
    assert step["now"] == 2 * per_epoch - 1
    logging_steps = {s for s in range(2 * per_epoch) if (s + 1) % every == 0}
    epoch_ends = {per_epoch - 1, 2 * per_epoch - 1}
    steps_that_read = {s for s, _ in reads if s >= 0}
    assert steps_that_read & logging_steps, "the counter sees the reads on logging steps"
    assert steps_that_read <= logging_steps | epoch_ends, sorted(reads)


@pytest.mark.slow
def test_cifar10_fast_runs_under_smoke_on_the_cpu(tmp_path, compose_cfg):
    """The experiment's speed settings all compose and run on a CPU (on_device is a no-op
    there); compile is left to the test above, which compiles a small net in seconds."""
    root = image_folder(tmp_path / "cifar", {"train": 4, "test": 2}, CIFAR10, 32)
    cfg = compose_cfg("experiment=cifar10_fast", "trainer=smoke", "data=imagefolder",
                      f"data.root={root}", "data.batch_size=8", "module.compile=false")
    assert cfg.data.on_device and cfg.module.channels_last and cfg.data.val_size == 0
    assert cfg.trainer.precision == "32-true", "trainer=smoke replaces trainer=fast whole"
    try:
        metrics = train(cfg, RunContext.of(cfg.hydra))
    finally:
        GlobalHydra.instance().clear()
    assert read.read_json(tmp_path / runs.RUN_FILE)["status"] == "finished"
    assert 0.0 <= metrics["test_last/acc"] <= 1.0


def test_quick_help_prints_what_hydras_help_prints(tmp_path):
    """`--help` alone is answered by resnet_exp/core/usage.py; with an override Hydra answers."""
    quick = run_cli(["--help"], tmp_path, new_interpreter=True)
    hydra = run_cli(["--help", "seed=1"], tmp_path, new_interpreter=True)
    assert quick.returncode == hydra.returncode == 0, quick.stderr + hydra.stderr
    assert quick.stdout == hydra.stdout
    assert "\nmodel: " in quick.stdout and " resnet20," in quick.stdout
