"""`python -m resnet_exp.predict RUN IMAGES`: a trained run's top-k classes of PNG files, written
by PIL from the digits' test images, are the network's own on the data module's tensors of
those images (and well above chance); bad files are named with a reason and skipped."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

from resnet_exp import predict
from resnet_exp.runs.load import load

TOP_K = 3


@pytest.fixture(scope="module")
def test_images(digits_run):
    """The run's test split as the data module serves it (uint8 N x 1 x 8 x 8, labels), and the
    network's probabilities of it, prepared as its test batches are."""
    loaded = load(digits_run)
    datamodule = loaded.parts.datamodule
    datamodule.setup("test")
    rows = datamodule.test_set.index
    x, y = datamodule.test_set.x[rows], datamodule.test_set.y[rows]
    with torch.no_grad():
        probs = loaded.model(datamodule.prepare_batch(x, y)[0]).softmax(1)
    return x, y, probs


def write_pngs(folder: Path, x: torch.Tensor) -> list[Path]:
    folder.mkdir(parents=True)
    paths = [folder / f"{i:03d}.png" for i in range(len(x))]
    for path, image in zip(paths, x, strict=True):
        Image.fromarray(image[0].numpy(), mode="L").save(path)
    return paths


@pytest.mark.slow
def test_predictions_are_the_networks_own_and_bad_files_are_skipped(digits_run, test_images,
                                                                    tmp_path):
    x, y, probs = test_images
    paths = write_pngs(tmp_path / "images", x)
    corrupt = tmp_path / "images" / "corrupt.png"  # a real PNG cut short
    corrupt.write_bytes(paths[0].read_bytes()[:60])
    (tmp_path / "images" / "notes.txt").write_text("not an image\n")
    (tmp_path / "images" / ".hidden.png").write_bytes(paths[1].read_bytes())
    rgb = tmp_path / "rgb.png"  # the first digit again, as an RGB image: read back as grey
    Image.fromarray(np.repeat(x[0, 0].numpy()[:, :, None], 3, axis=2), mode="RGB").save(rgb)
    out = tmp_path / "preds.json"

    result = run_cli([str(digits_run), "images", str(rgb), "missing.png", "--top-k", str(TOP_K),
                      "--out", str(out)], tmp_path, module="resnet_exp.predict",
                     env={"CUDA_VISIBLE_DEVICES": ""})  # the CPU's float sums, as here
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    written = json.loads(out.read_text())
    skipped = {Path(s["path"]).name: s["reason"] for s in written["skipped"]}
    assert skipped.keys() == {"corrupt.png", "notes.txt", "missing.png"}
    assert "corrupted" in skipped["corrupt.png"]
    assert skipped["notes.txt"].startswith("Unsupported image file")
    assert skipped["missing.png"] == "no such file or folder"
    for name, reason in skipped.items():
        assert f"{name}: {reason}" in result.stderr

    predictions = written["predictions"]
    assert [Path(p["path"]).name for p in predictions] == [p.name for p in paths] + ["rgb.png"]
    top = probs.topk(TOP_K)
    for p, values, index in zip(predictions, top.values, top.indices, strict=False):
        assert p["classes"] == [str(i) for i in index.tolist()]
        assert p["probabilities"] == pytest.approx(values.tolist(), abs=1e-5)
    assert predictions[-1] == {**predictions[0], "path": str(rgb)}
    accuracy = np.mean([p["classes"][0] == str(int(label))
                        for p, label in zip(predictions, y, strict=False)])
    assert accuracy > 0.5  # chance: 0.1
    assert written["checkpoint"].endswith("best.ckpt")


@pytest.mark.slow
def test_csv_and_table_give_the_same_top_k(digits_run, test_images, tmp_path, capsys):
    x, _, probs = test_images
    paths = write_pngs(tmp_path / "images", x[:5])
    out = tmp_path / "preds.csv"
    assert predict.main([str(digits_run), *map(str, paths), "--top-k", "2", "--out",
                         str(out)]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "class_1", "probability_1", "class_2", "probability_2"]
    top = probs[:5].topk(2)
    assert [[r["class_1"], r["class_2"]] for r in rows] == [[str(i) for i in index]
                                                           for index in top.indices.tolist()]
    assert [float(r["probability_1"]) for r in rows] == pytest.approx(
        top.values[:, 0].tolist(), abs=1e-5)

    capsys.readouterr()
    assert predict.main([str(digits_run), str(paths[0]), "--top-k", "50"]) == 0
    table = capsys.readouterr().out
    assert "top 10" in table and "top 11" not in table  # k is at most the number of classes
    assert f"{int(probs[0].argmax())} ({float(probs[0].max()):.4f})" in table


@pytest.mark.slow
def test_nothing_to_predict_is_one_line_and_status_2(digits_run, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert predict.main([str(digits_run), str(text), str(empty)]) == 2
    err = capsys.readouterr().err
    assert f"skipped {empty}: empty file" in err
    assert "error: none of the 2 file(s) given is an image this run can predict" in err


@pytest.mark.parametrize("args, message", [
    (["--top-k", "0"], "--top-k 0: give 1 or more"),
    (["--out", "preds.txt"], "name a .csv or a .json file"),
])
def test_bad_arguments_are_refused_before_the_run_is_read(tmp_path, capsys, args, message):
    assert predict.main([str(tmp_path / "no_run"), str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err


def test_a_folder_that_is_no_run_is_one_line(tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(image)
    assert predict.main([str(tmp_path), str(image)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
