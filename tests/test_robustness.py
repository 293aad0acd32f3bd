"""Bad inputs and bad luck, each with its message: broken, foreign and malicious checkpoints,
configs that name outside code, folders that are not runs or cannot be written, a full disk,
a kill in the middle of a checkpoint write, a loss that becomes NaN."""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from conftest import ROOT, run_cli
from omegaconf import OmegaConf

from resnet_exp import runs
from resnet_exp.core.errors import UserError
from resnet_exp.models.resnet import CifarResNet
from resnet_exp.models.weights import load_weights
from resnet_exp.runs import hydra_hooks, read, resume, trust
from resnet_exp.training import checkpoints

# The kill tests' small deterministic run; the figure callbacks only cost time here.
TINY = ["trainer=smoke", "deterministic=true", "callbacks=lean"]


def lightning_checkpoint(model: torch.nn.Module, epoch: int = 0) -> dict:
    # as Classifier's state dict names the weights: "model.<name>"
    return {"epoch": epoch, "global_step": 3,
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}


class _Holder(torch.nn.Module):  # what Classifier looks like to a state dict
    def __init__(self, model):
        super().__init__()
        self.model = model


# -- checkpoints ----------------------------------------------------------------------------------

def test_a_checkpoint_round_trips_and_truncation_or_garbage_is_named_corrupt(tmp_path):
    path = tmp_path / "last.ckpt"
    checkpoints.save(lightning_checkpoint(CifarResNet(depth=20, num_classes=10)), path)
    assert checkpoints.load(path)["epoch"] == 0
    data = path.read_bytes()
    for name, content in (("truncated", data[: len(data) // 2]), ("empty", b""),
                          ("garbage", b"not a checkpoint" * 50)):
        broken = tmp_path / f"{name}.ckpt"
        broken.write_bytes(content)
        with pytest.raises(UserError, match="corrupt or truncated"):
            checkpoints.load(broken)
    with pytest.raises(UserError, match="does not exist"):
        checkpoints.load(tmp_path / "missing.ckpt")
    torch.save({"epoch": 1}, tmp_path / "plain.ckpt")
    with pytest.raises(UserError, match="not a Lightning checkpoint"):
        checkpoints.load(tmp_path / "plain.ckpt")


class _Payload:
    """Unpickled without weights_only, it would create a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_holding_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"state_dict": {}, "payload": _Payload(marker)}, tmp_path / "evil.ckpt")
    with pytest.raises(UserError, match="could run code") as error:
        checkpoints.load(tmp_path / "evil.ckpt")
    assert "it imports getattr" in str(error.value)  # how pickle reaches Path.touch
    assert not marker.exists()
    # the plugin Lightning calls for resume and test does the same, whatever it is asked
    with pytest.raises(UserError, match="could run code"):
        checkpoints.AtomicCheckpointIO().load_checkpoint(tmp_path / "evil.ckpt",
                                                         weights_only=False)
    assert not marker.exists()


def test_the_checkpoint_plugin_hands_a_bare_state_dict_back_as_ddp_spawn_needs(tmp_path):
    # Lightning's spawn launcher saves rank 0's weights through the plugin and loads them back in
    # the main process: `trainer=ddp trainer.strategy=ddp_spawn` failed there with "is not a
    # Lightning checkpoint: it has no state_dict" (found by tests/combos/)
    plugin, weights = checkpoints.AtomicCheckpointIO(), {"fc.weight": torch.ones(2, 3)}
    plugin.save_checkpoint(weights, tmp_path / ".temp.ckpt")
    loaded = plugin.load_checkpoint(tmp_path / ".temp.ckpt")
    assert loaded.keys() == weights.keys()
    assert torch.equal(loaded["fc.weight"], weights["fc.weight"])


def test_a_raw_pickle_is_named_as_python_objects_and_never_loaded(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}, protocol=5))
    with pytest.raises(UserError, match=r"holds Python objects.*pathlib\.Path\.touch"):
        checkpoints.load(path)
    with pytest.raises(UserError, match="model.weights=.*holds Python objects") as error:
        load_weights(CifarResNet(depth=20), str(path))
    assert "weights_only=False" not in str(error.value) and not marker.exists()


def test_a_checkpoint_of_another_model_is_named_as_such(tmp_path):
    resnet20 = _Holder(CifarResNet(depth=20, num_classes=10))
    checkpoint = lightning_checkpoint(CifarResNet(depth=32, num_classes=10))
    with pytest.raises(UserError, match="different model.*unexpected.*layer1.3"):
        checkpoints.check_compatible(resnet20, checkpoint, "other.ckpt")
    checkpoint = lightning_checkpoint(CifarResNet(depth=20, num_classes=100))
    with pytest.raises(UserError, match=r"resized \(model.fc.weight is \(100, 64\) there"):
        checkpoints.check_compatible(resnet20, checkpoint, "other.ckpt")
    checkpoints.check_compatible(resnet20, lightning_checkpoint(resnet20.model), "same.ckpt")


def test_a_full_disk_leaves_the_old_checkpoint_and_no_partial_file(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    checkpoints.save({"state_dict": {}, "epoch": 1}, path)

    def fill_disk(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    with mock.patch.object(checkpoints.torch, "save", side_effect=fill_disk):
        with pytest.raises(UserError, match="no space left on the device"):
            checkpoints.save({"state_dict": {}, "epoch": 2}, path)
    assert checkpoints.load(path)["epoch"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_an_unwritable_output_folder_is_named(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    # tests run as root, where permissions do not stop writes: a folder under a file does
    with pytest.raises(UserError, match="cannot write .*Not a directory.*hydra.run.dir"):
        checkpoints.save({"state_dict": {}}, a_file / "checkpoints" / "last.ckpt")
    message = hydra_hooks.check_writable(a_file / "run", "hydra.run.dir")
    assert "Not a directory" in message and "hydra.run.dir=" in message
    assert hydra_hooks.check_writable(tmp_path / "fine" / "run", "hydra.run.dir") is None


@pytest.mark.slow
def test_cli_refuses_an_unwritable_run_folder_before_starting(tmp_path):
    (tmp_path / "file").write_text("")
    result = run_cli(["trainer=smoke", f"hydra.run.dir={tmp_path / 'file' / 'run'}"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: cannot write to the output folder")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one_readable(tmp_path):
    """SIGKILL a process in the middle of writing a checkpoint (half of it in the temporary
    file): the last complete checkpoint still loads, and resume clears the leftover temporary
    file. The writer kills itself at that point, so the kill cannot land anywhere else."""
    path = tmp_path / "checkpoints" / "last.ckpt"
    writer = (
        "import io, os, signal, sys, torch\n"
        "from resnet_exp.training import checkpoints\n"
        "path = sys.argv[1]\n"
        "checkpoints.save({'state_dict': {'w': torch.full((1_000_000,), 0.0)}, 'epoch': 0}, path)\n"
        "save = torch.save\n"
        "def half_then_kill(obj, f):\n"
        "    data = io.BytesIO()\n"
        "    save(obj, data)\n"
        "    f.write(data.getvalue()[: len(data.getvalue()) // 2])\n"
        "    f.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "torch.save = half_then_kill\n"
        "checkpoints.save({'state_dict': {'w': torch.full((1_000_000,), 1.0)}, 'epoch': 1}, path)\n"
    )
    process = subprocess.run([sys.executable, "-c", writer, str(path)], timeout=120,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.returncode == -signal.SIGKILL
    assert list(path.parent.glob(".last.ckpt.*.tmp")), "the kill should land mid-write"
    checkpoint = checkpoints.load(path)
    assert (checkpoint["state_dict"]["w"] == checkpoint["epoch"]).all()
    resume.prepare(tmp_path)
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


# -- run folders and configs ------------------------------------------------------------------

def test_a_folder_that_is_not_a_run_is_named(tmp_path):
    with pytest.raises(UserError, match="has no .hydra/config.yaml, so it is not a run folder"):
        read.load_config(tmp_path)
    with pytest.raises(UserError, match="is not a folder"):
        read.load_config(tmp_path / "nowhere")
    with pytest.raises(UserError, match="not a run folder"):
        resume.command_line(["resnet_exp", f"resume={tmp_path}"])


def fake_run(folder: Path, overrides: list[str], config: dict | None = None) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), folder / runs.OVERRIDES_FILE)
    OmegaConf.save(OmegaConf.create(config or {"seed": 42}), folder / runs.CONFIG_FILE)
    return folder


@pytest.mark.parametrize("override", [
    "+callbacks.evil._target_=os.system",
    "+callbacks.evil._target_=torch.hub.load",  # an allowed package, but it runs fetched code
    "model._target_=builtins.eval",
])
def test_a_config_naming_outside_code_is_refused_unless_trusted(tmp_path, override):
    run = fake_run(tmp_path / "run", ["trainer=smoke", override])
    key, target = override.lstrip("+").split("=")
    with pytest.raises(UserError, match=f"refusing the config of .*{key}={target}.*--trust"):
        resume.command_line(["resnet_exp", f"resume={run}"])
    argv = resume.command_line(["resnet_exp", f"resume={run}", "--trust"])
    assert override in argv and f"hydra.run.dir='{run}'" in argv


def test_the_allow_list():
    assert trust.allowed("resnet_exp.models.resnet.CifarResNet")
    assert trust.allowed("torch.optim.SGD") and trust.allowed("pytorch_lightning.Trainer")
    for target in ("os.system", "subprocess.run", "torchx.x", "torch.hub.load",
                   "torch.utils.cpp_extension.load_inline", "${oc.env:TARGET}", 3):
        assert not trust.allowed(target), target


def test_a_run_whose_saved_overrides_were_edited_to_reach_hydra_is_refused(tmp_path):
    run = fake_run(tmp_path / "run", ["hydra.searchpath=[file:///elsewhere]"])
    with pytest.raises(UserError, match="was edited"):
        resume.command_line(["resnet_exp", f"resume={run}", "--trust"])


def test_resume_with_a_sweep_flag_is_refused(tmp_path):
    run = fake_run(tmp_path / "run", ["trainer=smoke"])
    with pytest.raises(UserError, match="hydra.sweep.dir=<its folder> resume=true"):
        resume.command_line(["resnet_exp", "-m", f"resume={run}"])


def test_resume_keeps_other_command_lines_and_replaces_saved_overrides(tmp_path):
    assert resume.command_line(["x", "seed=1"]) == ["x", "seed=1"]
    assert resume.command_line(["x", "resume=true", "-m"]) == ["x", "resume=true", "-m"]
    run = fake_run(tmp_path / "run", ["trainer=smoke", "seed=3", "resume=true"])
    argv = resume.command_line(["x", f"resume={run}", "seed=4"])
    assert argv[1:3] == ["trainer=smoke", "seed=4"]
    assert argv[3:] == [f"resume='{run}'", f"hydra.run.dir='{run}'", "hydra.output_subdir=null",
                        "hydra.mode=RUN"]  # a sweep's job resumes as that one job


# -- a loss that becomes NaN ------------------------------------------------------------------

@pytest.mark.slow
def test_a_diverging_run_stops_failed_naming_the_step_and_keeps_a_finite_checkpoint(tmp_path):
    """Epoch 0 trains at lr 0.1; then StepLR multiplies the rate by 1e9 and the next epoch
    diverges. The run must stop with status 2 and a message naming the step, its status must
    say failed, and last.ckpt must still hold finite weights from epoch 0."""
    result = run_cli([*TINY, "trainer.max_epochs=4", "scheduler=step",
                      "scheduler.scheduler.step_size=1", "scheduler.scheduler.gamma=1e9",
                      "hydra.run.dir=run"], tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    error = result.stderr.strip().splitlines()[-1]
    # the last update of epoch 1 overflows the weights while its loss is still finite
    assert error.startswith("error: the weights became NaN or infinite by global step 6 (epoch 1"
                            ), error
    assert "keeps the last good epoch" in error and "Traceback" not in result.stderr
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "failed" and "step" in info["error"]
    assert not (tmp_path / "run" / "metrics.json").exists()
    last = checkpoints.load(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 0
    assert all(v.isfinite().all() for v in last["state_dict"].values() if v.is_floating_point())


def test_the_guard_stops_at_the_first_nan_loss_and_names_it(tmp_path):
    import pytorch_lightning as pl

    from resnet_exp.callbacks.guards import NonFinite, StopOnNonFinite

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.linear, self.batches = torch.nn.Linear(4, 2), 0

        def training_step(self, batch, batch_idx):
            self.batches += 1
            loss = self.linear(batch[0]).pow(2).mean()
            return loss * float("nan") if self.batches == 5 else loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = torch.utils.data.TensorDataset(torch.randn(32, 4))
    module = Module()
    trainer = pl.Trainer(max_epochs=3, log_every_n_steps=1, logger=False, accelerator="cpu",
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[StopOnNonFinite()],
                         default_root_dir=tmp_path)
    with pytest.raises(NonFinite, match=r"loss became nan at epoch 1, batch 0 \(global step 5\)"):
        trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=8))
    assert module.batches == 5  # stopped at once, not at the end of the epoch
