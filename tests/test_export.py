"""`python -m resnet_exp.export RUN --format onnx|torchscript`: the file, run by onnxruntime or
torch.jit.load, gives the PyTorch network's logits on a batch of the run's test images (max abs
difference <= 1e-4, at a batch size other than the one exported with), and carries the
preprocessing that the run's data config states; a run trained compiled exports its plain
network."""

from __future__ import annotations

import json
import shutil

import onnx
import onnxruntime
import pytest
import torch
from conftest import run_cli
from omegaconf import OmegaConf

from resnet_exp import export
from resnet_exp.runs import OVERRIDES_FILE
from resnet_exp.runs.load import load

# the tests' own reading of the TorchScript file: torch 2.10+ calls TorchScript deprecated
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
BATCH = 37  # not export.EXAMPLE_BATCH: the batch dimension must be free
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def batch(digits_run):
    """Test images prepared as the run's test batches are, and the network's logits of them."""
    loaded = load(digits_run)
    datamodule = loaded.parts.datamodule
    datamodule.setup("test")
    rows = datamodule.test_set.index[:BATCH]
    x, _ = datamodule.prepare_batch(datamodule.test_set.x[rows], datamodule.test_set.y[rows])
    with torch.no_grad():
        return x, loaded.model(x), loaded.epoch


def expected_metadata(run_dir, epoch: int) -> dict:
    data = OmegaConf.load(run_dir / ".hydra" / "config.yaml").data  # what the run was given
    return {"classes": [str(i) for i in range(10)], "in_channels": data.in_channels,
            "image_size": data.image_size, "resize": data.image_size,
            "center_crop": data.image_size, "mean": list(data.mean), "std": list(data.std),
            "epoch": epoch, "checkpoint": "best.ckpt"}


@pytest.mark.slow
def test_onnx_file_runs_in_onnxruntime_as_the_network(digits_run, batch, tmp_path):
    x, logits, epoch = batch
    out = tmp_path / "digits.onnx"
    result = run_cli([str(digits_run), "--format", "onnx", "--out", str(out)], tmp_path,
                     module="resnet_exp.export")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == f"onnx: {out}"
    onnx.checker.check_model(onnx.load(out))

    session = onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"])
    [got] = session.run(None, {export.INPUT: x.numpy()})
    assert got.shape == (BATCH, 10)
    assert torch.from_numpy(got).sub(logits).abs().max() <= TOLERANCE
    metadata = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    assert metadata.items() >= expected_metadata(digits_run, epoch).items()
    assert metadata["run"] == digits_run.name


@pytest.mark.slow
def test_torchscript_file_runs_as_the_network_by_default_in_the_run(digits_run, batch,
                                                                    tmp_path, capsys):
    x, logits, epoch = batch
    run = tmp_path / "run"
    shutil.copytree(digits_run, run, ignore=shutil.ignore_patterns("tensorboard"))
    assert export.main([str(run), "--format", "torchscript"]) == 0
    out = run / "export" / "model.pt"
    assert capsys.readouterr().out.strip() == f"torchscript: {out}"

    extra = {export.METADATA_FILE: ""}
    scripted = torch.jit.load(str(out), _extra_files=extra)
    with torch.no_grad():
        assert scripted(x).sub(logits).abs().max() <= TOLERANCE
    metadata = json.loads(extra[export.METADATA_FILE])
    assert metadata.items() >= expected_metadata(digits_run, epoch).items()


@pytest.mark.slow
def test_a_run_trained_compiled_and_channels_last_exports_its_plain_network(digits_run, batch,
                                                                           tmp_path):
    """A compiled network cannot be traced ("using FX to torch.jit.trace a dynamo-optimized
    function"): the export loads the run without compile and layout."""
    x, logits, _ = batch
    run = tmp_path / "run"
    shutil.copytree(digits_run, run, ignore=shutil.ignore_patterns("tensorboard"))
    with open(run / OVERRIDES_FILE, "a") as f:  # as Hydra records `module.compile=true ...`
        f.write("- module.compile=true\n- module.channels_last=true\n")
    out = tmp_path / "model.pt"
    assert export.main([str(run), "--format", "torchscript", "--out", str(out)]) == 0
    with torch.no_grad():
        assert torch.jit.load(str(out))(x).sub(logits).abs().max() <= TOLERANCE


def test_a_folder_that_is_no_run_is_one_line(tmp_path, capsys):
    assert export.main([str(tmp_path), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "export").exists()
