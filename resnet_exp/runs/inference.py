"""A trained run's network used outside a run (predict.py, export.py): loaded plain, with its
class names and the preprocessing its test applies, stated once for both.

The preprocessing is the data module's own: its test transform for a decoded image of any size
(folder sets: Resize(augmentation.resize) + CenterCrop; every set: Resize + CenterCrop to
data.image_size when no resize is set) and `prepare_batch` (x / 255, then (x - mean) / std).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet_exp.runs.load import Loaded, load

# What is loaded is the bare eval network on the CPU, whatever the run trained with: a compiled
# network would compile again for a forward pass and cannot be traced for export, channels_last
# is a speed layout that export has no use for, and the trainer (never run here) must build on
# a machine without the run's GPUs or precision.
PLAIN = ("module.compile=false", "module.channels_last=false", "trainer.accelerator=cpu",
         "trainer.devices=1", "trainer.precision=32-true")


def load_plain(run_dir: str | Path, trust: bool = False) -> Loaded:
    """The run's best checkpoint, in its bare eval network (`PLAIN`)."""
    return load(run_dir, "best", PLAIN, trust)


def class_names(loaded: Loaded) -> list[str]:
    """The names of the network's outputs, in order: those of the run's per-class test results
    (callbacks=default writes them), else the data module's once set up, else "0", "1", ...
    when neither is at hand (its data is not on this machine)."""
    from resnet_exp.callbacks.perclass import KEY
    from resnet_exp.core.errors import UserError

    count = loaded.task.data.num_classes
    names = list(loaded.metrics.get(f"test/{KEY}") or {})
    if len(names) != count:
        datamodule = loaded.parts.datamodule
        try:
            datamodule.setup("test")
            names = [str(c) for c in datamodule.classes]
        except UserError:
            names = []
    return names if len(names) == count else [str(i) for i in range(count)]


def test_transform(datamodule):
    """The per-image transform of the run's test split: a uint8 C x H x W image of any size to
    one of data.image_size (a set held in memory is already that size, and passes unchanged)."""
    from resnet_exp.data.augment import Augmentation

    return (datamodule.augmentation or Augmentation()).per_image(False, datamodule.image_size)


def preprocessing(loaded: Loaded) -> dict[str, Any]:
    """What a program outside this package needs to feed the network: how to make its input from
    an image, what its output means, and where it comes from."""
    datamodule = loaded.parts.datamodule
    augment = datamodule.augmentation
    size, channels = datamodule.image_size, datamodule.in_channels
    mean, std = (datamodule.mean, datamodule.std) if datamodule.normalize else ([0.0], [1.0])
    classes = class_names(loaded)
    return {
        "classes": classes,
        "in_channels": channels,
        "image_size": size,
        "resize": (augment.resize if augment is not None else None) or size,
        "center_crop": size,
        # one value stands for every channel, as the data module broadcasts it
        "mean": [float(m) for m in mean] * (channels if len(mean) == 1 else 1),
        "std": [float(s) for s in std] * (channels if len(std) == 1 else 1),
        "input": f"float32 N x {channels} x {size} x {size}, "
                 f"{'RGB' if channels == 3 else 'grey'} pixels / 255, then (x - mean) / std "
                 f"per channel; the image resized (shorter side, antialiased) then center-cropped",
        "output": f"logits N x {len(classes)}, in the order of classes (softmax: probabilities)",
        "run": str(loaded.dir.resolve().name),
        "checkpoint": loaded.checkpoint.name,
        "epoch": loaded.epoch,
    }
