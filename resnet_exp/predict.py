"""`python -m resnet_exp.predict RUN_DIR IMAGE_OR_FOLDER ... [--top-k 5] [--out FILE] [--trust]`:
the top-k classes of images, with their probabilities, by a run's best checkpoint.

Each image takes the run's own test path (runs/inference.py): decoded by torchvision's decoders,
as the folder sets read (JPEG, PNG, WebP, GIF), as grey or RGB for the network's
data.in_channels; resized and center-cropped as its test split; normalised by its data module's
`prepare_batch`; batched at data.eval_batch_size, on the GPU when there is one
(CUDA_VISIBLE_DEVICES= keeps it on the CPU). A folder is read recursively, hidden files left out.

Without --out, a table on the console; `--out preds.csv` (path, class_1, probability_1, ...) or
`--out preds.json` (also the files skipped). A file that cannot be predicted (no image, truncated,
unreadable) is named on stderr with the reason and skipped; the exit status is 0 when at least
one image was predicted, 2 when none was.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from resnet_exp.core.console import command
from resnet_exp.core.errors import UserError

# torchvision's errors open with where in its C++ they were raised ("decode_png, /__w/.../
# decode_png.cpp:79, Out of bound read ..."): the place says nothing to a user
DECODER_PLACE = re.compile(r"^\S+, \S+\.cpp:\d+, ")
OUT_FORMATS = (".csv", ".json")


@dataclass(frozen=True)
class Prediction:
    path: str
    classes: list[str]
    probabilities: list[float]


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


class NotAnImage(Exception):
    """A file that cannot be predicted; the message is why."""


def image_files(paths: list[Path]) -> tuple[list[Path], list[Skipped]]:
    """The files named, and those under the folders named (recursively, sorted, hidden ones
    left out); a path that does not exist is skipped."""
    files, missing = [], []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not any(
                part.startswith(".") for part in p.relative_to(path).parts))
        elif path.exists():
            files.append(path)
        else:
            missing.append(Skipped(str(path), "no such file or folder"))
    return files, missing


def decode(path: Path, channels: int) -> torch.Tensor:
    """The image in `path` as uint8 `channels` x H x W (1: grey, 3: RGB, converted as the
    decoder does); NotAnImage says why it cannot be."""
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2.functional import to_dtype

    try:
        data = path.read_bytes()
    except OSError as e:
        raise NotAnImage(f"cannot be read: {e.strerror or e}") from None
    if not data:
        raise NotAnImage("empty file")
    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    try:
        image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode)
    except RuntimeError as e:
        message = DECODER_PLACE.sub("", str(e).strip().splitlines()[0])
        # two sentences: what is wrong, and which formats it reads; a third, where given, is for
        # programmers ("please rely on `decode_avif` ... directly")
        raise NotAnImage(". ".join(message.split(". ")[:2]).rstrip(".")) from None
    if image.dim() == 4:  # an animated GIF decodes as its frames: the first, as a viewer shows
        image = image[0]
    # a 16-bit PNG decodes as uint16; the network learnt from 8-bit pixels
    return image if image.dtype == torch.uint8 else to_dtype(image, torch.uint8, scale=True)


@torch.inference_mode()
def probabilities(model: torch.nn.Module, datamodule, images: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N x classes, on the CPU) of a uint8 batch on the model's device,
    prepared as the run's test batches are."""
    labels = torch.zeros(len(images), dtype=torch.long, device=images.device)  # unused
    x, _ = datamodule.prepare_batch(images, labels)
    return model(x).float().softmax(1).cpu()


def predict(loaded, files: list[Path], top_k: int,
            device: torch.device) -> tuple[list[Prediction], list[Skipped]]:
    """The top-k classes of each file that is an image, in the order given; the others skipped."""
    from resnet_exp.runs.inference import class_names, test_transform

    datamodule = loaded.parts.datamodule
    transform = test_transform(datamodule)
    model = loaded.model.to(device)
    names = class_names(loaded)
    k = min(top_k, len(names))
    predictions, skipped = [], []
    step = datamodule.eval_batch_size
    for start in range(0, len(files), step):
        images, kept = [], []
        for path in files[start : start + step]:
            try:
                images.append(transform(decode(path, datamodule.in_channels)))
            except NotAnImage as e:
                skipped.append(Skipped(str(path), str(e)))
                continue
            kept.append(path)
        if not images:
            continue
        top = probabilities(model, datamodule, torch.stack(images).to(device)).topk(k)
        predictions += [Prediction(str(path), [names[i] for i in index.tolist()], p.tolist())
                        for path, p, index in zip(kept, top.values, top.indices, strict=True)]
    return predictions, skipped


def write(out: Path, loaded, predictions: list[Prediction], skipped: list[Skipped]) -> None:
    from resnet_exp.runs.atomic import atomic_write, write_json_atomic

    if out.suffix.lower() == ".json":
        write_json_atomic(out, {
            "run": str(loaded.dir.resolve()), "checkpoint": str(loaded.checkpoint),
            "epoch": loaded.epoch,
            "predictions": [vars(p) for p in predictions], "skipped": [vars(s) for s in skipped]})
        return
    k = len(predictions[0].classes)

    def rows(f) -> None:
        table = csv.writer(f)
        table.writerow(["path", *[f"{name}_{i}" for i in range(1, k + 1)
                                  for name in ("class", "probability")]])
        for p in predictions:
            table.writerow([p.path, *[v for pair in zip(p.classes, p.probabilities, strict=True)
                                      for v in pair]])

    atomic_write(out, rows)


def print_table(predictions: list[Prediction]) -> None:
    from rich.table import Table

    from resnet_exp.core.console import add_row, console

    table = Table(show_header=True, header_style="bold")
    table.add_column("image", overflow="fold")
    for rank in range(1, len(predictions[0].classes) + 1):
        table.add_column(f"top {rank}", overflow="fold")
    for p in predictions:
        add_row(table, p.path, *[f"{c} ({v:.4f})"
                                 for c, v in zip(p.classes, p.probabilities, strict=True)])
    console.print(table)


def check_arguments(args: argparse.Namespace) -> None:
    if args.top_k < 1:
        raise UserError(f"--top-k {args.top_k}: give 1 or more")
    if args.out is not None and args.out.suffix.lower() not in OUT_FORMATS:
        raise UserError(f"--out {args.out}: name a .csv or a .json file")


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m resnet_exp.predict",
        description="The top-k classes of images by a run's best checkpoint, with its own "
                    "preprocessing.")
    parser.add_argument("run_dir", type=Path, help="the run folder")
    parser.add_argument("paths", nargs="+", type=Path, help="image files or folders of them")
    parser.add_argument("--top-k", type=int, default=5, help="classes per image (default 5)")
    parser.add_argument("--out", type=Path, help="write to this .csv or .json file instead")
    parser.add_argument("--trust", action="store_true",
                        help="accept _target_ entries outside the allow-list (runs/trust.py)")
    args = parser.parse_args(argv)
    check_arguments(args)
    files, missing = image_files(args.paths)
    from resnet_exp.runs.inference import load_plain

    loaded = load_plain(args.run_dir, args.trust)
    channels = loaded.parts.datamodule.in_channels
    if channels not in (1, 3):
        raise UserError(f"the run's network takes data.in_channels={channels}: images are read "
                        "as grey (1) or RGB (3) only")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    predictions, unreadable = predict(loaded, files, args.top_k, device)
    skipped = missing + unreadable
    for each in skipped:
        print(f"skipped {each.path}: {each.reason}", file=sys.stderr)
    if not predictions:
        raise UserError(f"none of the {len(files) + len(missing)} file(s) given is an image "
                        "this run can predict" + (" (each named above)" if skipped else ""))
    if args.out is None:
        print_table(predictions)
    else:
        write(args.out, loaded, predictions, skipped)
        print(f"{len(predictions)} image(s) predicted, {len(skipped)} skipped: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
