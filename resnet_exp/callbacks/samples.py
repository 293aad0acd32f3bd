"""What the augmentation does: a few training images, each beside independent augmentations of
it, exactly as the network receives them (the data module's own on-device pipeline)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from resnet_exp.callbacks.outputs import save_figure
from resnet_exp.core import figures


class AugmentedSamples(pl.Callback):
    """At the start of training, `num_images` training images (evenly spaced through the training
    set) and `draws` augmentations of each: `<run>/figures/augmented_samples.png` and TensorBoard
    image `train/augmented_samples`.

    Leaves the run untouched: the images come from the dataset directly (not an extra pass of the
    shuffled loader, which would advance its sampler), global RNGs are restored afterwards, and
    the augmentations are drawn from a generator of this callback's own, so the training batches
    are the same with this callback as without it.
    """

    def __init__(self, output_dir: str | None = None, num_images: int = 8, draws: int = 5,
                 seed: int = 0) -> None:
        self.output_dir = output_dir
        self.num_images = num_images
        self.draws = draws
        self.seed = seed

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        dataset = getattr(datamodule, "train_set", None)
        if not trainer.is_global_zero or dataset is None or not hasattr(datamodule,
                                                                         "prepare_batch"):
            return
        count = min(self.num_images, len(dataset))
        rows = torch.linspace(0, len(dataset) - 1, count).long().tolist()
        with torch.random.fork_rng(devices=[]):  # folder sets crop with the global RNG
            images, labels = zip(*(dataset[i] for i in rows), strict=True)
            x, y = torch.stack(images), torch.as_tensor([int(label) for label in labels])
            stored, _ = datamodule.prepare_batch(x, y)
            generator = torch.Generator(device=x.device).manual_seed(self.seed)
            draws = [datamodule.prepare_batch(x, y, train=True, generator=generator)[0]
                     for _ in range(self.draws)]
        stats = figures.image_stats(datamodule)
        augmentation = getattr(datamodule, "augmentation", None)
        on = {k: v for k, v in getattr(augmentation, "__dict__", {}).items() if v}
        settings = ", ".join(f"{k}={v}" for k, v in on.items())
        if all(torch.equal(d, stored) for d in draws):  # augmentation=none, or all of it off
            draws = []
            title = "Training images as the network sees them: no augmentation"
        else:
            title = f"Training images and {self.draws} augmentations of each ({settings})"
        fig = figures.augmented(figures.displayable(stored, *stats),
                                [figures.displayable(d, *stats) for d in draws], title)
        save_figure(trainer, self.output_dir, fig, "augmented_samples", "train/augmented_samples")
