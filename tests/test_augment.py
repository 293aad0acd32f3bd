"""The batched augmentation against torchvision's per-image transforms and the Cutout reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency, chisquare
from torchvision.transforms import v2

from resnet_exp.data import Augmentation, Synthetic

PAD = 4


def marked(n: int, size: int = 32) -> torch.Tensor:
    """n copies of an image whose channels hold (row + 1, column + 1): 0 only in the padding."""
    rows = torch.arange(1, size + 1, dtype=torch.uint8)[:, None].expand(size, size)
    image = torch.stack([rows, rows.T, torch.randint(0, 256, (size, size), dtype=torch.uint8)])
    return image.expand(n, -1, -1, -1).contiguous()


def offsets(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(top, left) of each crop in the padded image, read off the always-visible centre pixel."""
    return x[:, 0, 16, 16].long() - 17 + PAD, x[:, 1, 16, 16].long() - 17 + PAD


def crop_counts(top: torch.Tensor, left: torch.Tensor) -> np.ndarray:
    side = 2 * PAD + 1
    return torch.bincount(top * side + left, minlength=side * side).numpy()


def test_random_crop_is_uniform_over_the_81_offsets_like_torchvision():
    x = Augmentation(crop_padding=PAD).before_normalize(
        marked(16200), torch.Generator().manual_seed(0)
    )
    ours = crop_counts(*offsets(x))
    torch.manual_seed(0)
    crop = v2.RandomCrop(32, padding=PAD)
    reference = torch.stack([crop(image) for image in marked(2430)])
    theirs = crop_counts(*offsets(reference))
    assert ours.shape == (81,) and ours.min() > 0
    assert chisquare(ours).pvalue > 1e-3
    assert chisquare(theirs).pvalue > 1e-3  # the reference is uniform too: same offsets 0..8
    assert chi2_contingency(np.stack([ours, theirs])).pvalue > 1e-3


def test_random_crop_pixels_equal_torchvision_pad_then_crop():
    images = marked(64)
    x = Augmentation(crop_padding=PAD).before_normalize(images, torch.Generator().manual_seed(1))
    tops, lefts = offsets(x)
    for image, out, top, left in zip(images, x, tops.tolist(), lefts.tolist(), strict=True):
        padded = v2.functional.pad(image, [PAD])  # zero fill, like RandomCrop(padding=4)
        assert torch.equal(out, v2.functional.crop(padded, top, left, 32, 32))
    assert x.dtype == torch.uint8


def test_flip_half_the_images_the_same_way_as_torchvision():
    images = marked(10000)
    x = Augmentation(flip=True).before_normalize(images, torch.Generator().manual_seed(2))
    flipped = (x[:, 1, 0, 0] == 32).float()  # column marker of the left edge
    same = torch.equal(x[flipped == 1], v2.functional.horizontal_flip(images[flipped == 1]))
    assert same and torch.equal(x[flipped == 0], images[flipped == 0])
    torch.manual_seed(2)
    flip = v2.RandomHorizontalFlip()
    theirs = torch.stack([flip(image)[1, 0, 0] == 32 for image in images[:2000]]).float()
    # binomial std 0.005 for ours and 0.011 for theirs: 4 sigma
    assert abs(flipped.mean().item() - 0.5) < 0.02
    assert abs(theirs.mean().item() - 0.5) < 0.045


def reference_cutout(h: int, w: int, holes: int, length: int, rng: np.random.Generator):
    """DeVries & Taylor's Cutout.__call__ (github.com/uoguelph-mlrg/Cutout, util/cutout.py)."""
    mask = np.ones((h, w), np.float32)
    for _ in range(holes):
        y, x = rng.integers(h), rng.integers(w)
        y1, y2 = np.clip(y - length // 2, 0, h), np.clip(y + length // 2, 0, h)
        x1, x2 = np.clip(x - length // 2, 0, w), np.clip(x + length // 2, 0, w)
        mask[y1:y2, x1:x2] = 0.0
    return mask


@pytest.mark.parametrize(("holes", "size"), [(1, 16), (2, 8)])
def test_cutout_coverage_matches_the_reference(holes, size):
    n = 8000
    x = torch.ones((n, 3, 32, 32))
    out = Augmentation(cutout_holes=holes, cutout_size=size).after_normalize(
        x, torch.Generator().manual_seed(3)
    )
    assert torch.equal(out[:, 0], out[:, 2])  # one mask for all channels
    ours = (out[:, 0] == 0).float().mean(0)
    rng = np.random.default_rng(3)
    theirs = 1 - np.mean([reference_cutout(32, 32, holes, size, rng) for _ in range(n)], axis=0)
    # with one hole, a pixel is covered with probability P(row) * P(column): exact formula
    half = size // 2
    line = np.array([sum(c - half <= i < c + half for c in range(32)) / 32 for i in range(32)])
    exact = 1 - (1 - np.outer(line, line)) ** holes
    assert np.abs(ours.numpy() - exact).max() < 0.025  # per-pixel binomial std <= 0.0056
    assert np.abs(theirs - exact).max() < 0.025
    assert abs(ours.mean().item() - exact.mean()) < 0.003


def module(**kwargs) -> Synthetic:
    args = dict(num_classes=4, in_channels=3, image_size=32, mean=[0.5], std=[0.25],
                num_train=64, num_val=8, num_test=8, batch_size=16, seed=0)
    data = Synthetic(**{**args, **kwargs})
    data.setup()
    return data


def test_cutout_runs_after_normalisation_and_fills_zero():
    data = module(augmentation=Augmentation(cutout_holes=1, cutout_size=16))
    x = torch.full((200, 3, 32, 32), 255, dtype=torch.uint8)  # normalises to 2.0 everywhere
    out, _ = data.prepare_batch(x, torch.zeros(200, dtype=torch.long), train=True)
    zeros = (out[:, 0] == 0).sum((1, 2))
    assert set(out.unique().tolist()) == {0.0, 2.0}
    # a 16x16 square clipped at a corner keeps at least 8x8 of it
    assert zeros.min() >= 64 and zeros.max() <= 256


def test_same_seed_same_batch_and_another_seed_another():
    x = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    y = torch.zeros(32, dtype=torch.long)
    aug = dict(crop_padding=4, flip=True, cutout_holes=1, cutout_size=16)

    def batch(seed: int) -> torch.Tensor:
        return module(seed=seed, augmentation=Augmentation(**aug)).prepare_batch(x, y, True)[0]

    assert torch.equal(batch(5), batch(5))
    assert not torch.equal(batch(5), batch(6))


def test_none_changes_nothing():
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    y = torch.zeros(8, dtype=torch.long)
    none = Augmentation()
    assert torch.equal(none.before_normalize(x), x)
    assert torch.equal(none.after_normalize(x.float()), x.float())
    data = module(augmentation=none)
    assert torch.equal(data.prepare_batch(x, y, True)[0], data.prepare_batch(x, y, False)[0])


def test_per_image_pipelines_end_in_uint8_of_the_right_size():
    image = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8)
    imagenet = Augmentation(random_resized_crop=224, flip=True, resize=256, center_crop=224)
    train, evaluate = imagenet.per_image(True, 224)(image), imagenet.per_image(False, 224)(image)
    assert train.shape == evaluate.shape == (3, 224, 224)
    assert train.dtype == evaluate.dtype == torch.uint8 and type(evaluate) is torch.Tensor
    reference = v2.Compose([v2.Resize(256), v2.CenterCrop(224)])(image)
    assert torch.equal(evaluate, reference)
    assert Augmentation().per_image(True, 32)(image).shape == (3, 32, 32)


def erased_boxes(x: torch.Tensor) -> list[tuple[int, int, int, int] | None]:
    """(height, width, top, left) of each image's zeroed rectangle (the image was all ones)."""
    boxes = []
    for image in (x[:, 0] == 0):
        rows, cols = image.any(1).nonzero(), image.any(0).nonzero()
        boxes.append(None if len(rows) == 0 else (
            len(rows), len(cols), int(rows[0]), int(cols[0])))
    return boxes


def test_random_erasing_draws_rectangles_like_torchvision():
    n, p = 6000, 0.5
    ones = torch.ones(n, 3, 32, 32)
    ours = erased_boxes(Augmentation(random_erasing=p).after_normalize(
        ones, torch.Generator().manual_seed(3)))
    torch.manual_seed(3)
    erase = v2.RandomErasing(p=p, value=0)
    theirs = erased_boxes(torch.stack([erase(image) for image in ones[:3000]]))
    for boxes in (ours, theirs):  # each erased region is one rectangle, filled with 0
        assert abs(sum(b is not None for b in boxes) / len(boxes) - p) < 0.04
    for k in range(4):  # height, width, top, left: one distribution
        a = np.array([b[k] for b in ours if b is not None])
        b = np.array([b[k] for b in theirs if b is not None])
        bins = np.histogram_bin_edges(np.concatenate([a, b]), bins=8)
        table = np.stack([np.histogram(a, bins)[0], np.histogram(b, bins)[0]]) + 1
        assert chi2_contingency(table).pvalue > 1e-3, k
    erased_area = np.array([b[0] * b[1] for b in ours if b is not None]) / 1024
    assert erased_area.min() >= 0.015 and erased_area.max() <= 0.36


def test_mixup_and_cutmix_targets_are_the_pixel_shares_of_the_two_labels():
    n, classes = 64, 10
    y = torch.arange(n) % classes
    x = y[:, None, None, None].float().expand(n, 3, 32, 32).contiguous()  # image = its label
    for augment in (Augmentation(mixup_alpha=0.2), Augmentation(cutmix_alpha=1.0)):
        mixed, soft = augment.mix(x, y, classes, torch.Generator().manual_seed(4))
        assert soft.shape == (n, classes) and torch.allclose(soft.sum(1), torch.ones(n))
        # torchvision pairs each image with the batch rolled by one: image i mixes with i - 1
        share = soft[torch.arange(n), y]  # the weight of the image's own label
        partner = y.roll(1)
        expected = share * y.float() + (1 - share) * partner.float()
        assert torch.allclose(mixed.mean(dim=(1, 2, 3)), expected, atol=1e-5)
    same = [Augmentation(mixup_alpha=0.2).mix(x, y, classes, torch.Generator().manual_seed(5))
            for _ in range(2)]
    assert torch.equal(same[0][0], same[1][0])  # drawn from the batch's generator, not torch's
