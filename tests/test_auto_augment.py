"""The batched TrivialAugment, RandAugment and AutoAugment against torchvision's v2 transforms:
every op image by image, and the draws of ops, magnitudes, signs and sub-policies."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from scipy.stats import chi2_contingency, chisquare
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from resnet_exp.core.errors import UserError
from resnet_exp.data import Augmentation
from resnet_exp.data.auto_augment import OPS, POLICIES, AutoAugment

REFERENCES = {"trivialaugment": v2.TrivialAugmentWide, "randaugment": v2.RandAugment,
              "autoaugment_cifar10": lambda: v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10),
              "autoaugment_imagenet": lambda: v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)}
SHAPES = [(3, 32, 32), (3, 24, 40), (1, 28, 28)]
SIGNED = {op for op, (_, signed) in v2.TrivialAugmentWide._AUGMENTATION_SPACE.items() if signed}


def torchvision_op(image: torch.Tensor, op: str, m: float) -> torch.Tensor:
    """What `_apply_image_or_video_transform` of torchvision's v2 auto-augment transforms runs
    for op `op` at magnitude m: its functional op and arguments (nearest pixels, no fill)."""
    nearest = InterpolationMode.NEAREST
    fixed = dict(angle=0.0, scale=1.0, interpolation=nearest, fill=None)
    shear = math.degrees(math.atan(m))
    calls = {
        "Identity": lambda: image,
        "ShearX": lambda: TF.affine(image, translate=[0, 0], shear=[shear, 0.0], center=[0, 0],
                                    **fixed),
        "ShearY": lambda: TF.affine(image, translate=[0, 0], shear=[0.0, shear], center=[0, 0],
                                    **fixed),
        "TranslateX": lambda: TF.affine(image, translate=[int(m), 0], shear=[0.0, 0.0], **fixed),
        "TranslateY": lambda: TF.affine(image, translate=[0, int(m)], shear=[0.0, 0.0], **fixed),
        "Rotate": lambda: TF.rotate(image, angle=m, interpolation=nearest, fill=None),
        "Brightness": lambda: TF.adjust_brightness(image, brightness_factor=1.0 + m),
        "Color": lambda: TF.adjust_saturation(image, saturation_factor=1.0 + m),
        "Contrast": lambda: TF.adjust_contrast(image, contrast_factor=1.0 + m),
        "Sharpness": lambda: TF.adjust_sharpness(image, sharpness_factor=1.0 + m),
        "Posterize": lambda: TF.posterize(image, bits=int(m)),
        "Solarize": lambda: TF.solarize(image, threshold=255.0 * m),
        "AutoContrast": lambda: TF.autocontrast(image),
        "Equalize": lambda: TF.equalize(image),
        "Invert": lambda: TF.invert(image),
    }
    return calls[op]()


def images(n: int, shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    """Random uint8 images, each channel in a range of its own (so that autocontrast, equalize
    and contrast have work to do), the first one flat (which they must leave alone)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((n, shape[0], 1, 1), generator=g) * 128
    high = low + torch.rand((n, shape[0], 1, 1), generator=g) * (255 - low)
    x = (low + torch.rand((n, *shape), generator=g) * (high - low)).round().to(torch.uint8)
    x[0] = 77
    return x


def magnitude(aug: AutoAugment, op: str, level: int, h: int, w: int) -> float:
    """The signed magnitude torchvision draws for `level` (2 x bin + negative) of `aug`'s space."""
    magnitudes_fn, signed = aug._space.get(op, (lambda *_: None, False))
    magnitudes = magnitudes_fn(aug.num_bins, h, w)
    m = 0.0 if magnitudes is None else float(magnitudes[level // 2])
    return -m if signed and level % 2 else m


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("op", OPS)
def test_each_op_equals_torchvision_image_by_image(op, shape):
    """One call, every image its own magnitude: bins 0 (magnitude 0, and -0 for the signed ops),
    1, 7, 15, 22 and 30 of TrivialAugmentWide's 31, each positive and negative (Invert, only
    AutoAugment's, has no magnitude)."""
    aug = AutoAugment("trivialaugment" if op != "Invert" else "autoaugment_imagenet")
    last = aug.num_bins - 1
    bins = sorted({0, 1, last // 4, last // 2, 3 * last // 4, last})
    levels = torch.tensor([2 * b + s for b in bins for s in (0, 1)] * 2)
    x = images(len(levels), shape, seed=len(op))
    ours = aug.apply(x, torch.full_like(levels, OPS.index(op)), levels)
    h, w = shape[1:]
    for image, out, level in zip(x, ours, levels.tolist(), strict=True):
        expected = torchvision_op(image, op, magnitude(aug, op, level, h, w))
        assert torch.equal(out, expected), (op, level)
    assert ours.dtype == torch.uint8


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("shape", SHAPES[:2], ids=lambda s: "x".join(map(str, s)))
def test_a_drawn_batch_equals_torchvision_running_each_image_s_draws(policy, shape):
    aug = AutoAugment(policy)
    x = images(96, shape, seed=3)
    ours = aug(x, torch.Generator().manual_seed(4))
    draws = aug.draws(len(x), x.device, torch.Generator().manual_seed(4))
    h, w = shape[1:]
    for i, (image, out) in enumerate(zip(x, ours, strict=True)):
        for op, level in draws:
            name = OPS[int(op[i])]
            image = torchvision_op(image, name, magnitude(aug, name, int(level[i]), h, w))
        assert torch.equal(out, image), i


def torchvision_draws(reference, n: int) -> list[list[tuple[str, float]]]:
    """Per image, the (op, signed magnitude) torchvision's transform `reference` applies, in
    order, over n calls (each on a blank image: only the draws count)."""
    drawn: list[tuple[str, float]] = []

    def record(image, transform_id, magnitude, **_):
        drawn.append((transform_id, magnitude))
        return image

    reference._apply_image_or_video_transform = record
    per_image = []
    for _ in range(n):
        drawn.clear()
        reference(torch.zeros(3, 32, 32, dtype=torch.uint8))
        per_image.append(list(drawn))
    return per_image


def our_draws(aug: AutoAugment, n: int, seed: int) -> list[list[tuple[str, float]]]:
    """The same from `aug`'s draws. AutoAugment's ops that do not apply are Identity here, and
    torchvision does not call them at all: left out."""
    slots = [(op.tolist(), level.tolist())
             for op, level in aug.draws(n, "cpu", torch.Generator().manual_seed(seed))]
    named = [[(OPS[ops[i]], magnitude(aug, OPS[ops[i]], levels[i], 32, 32))
              for ops, levels in slots] for i in range(n)]
    if aug.policy.startswith("autoaugment"):
        named = [[d for d in drawn if d[0] != "Identity"] for drawn in named]
    return named


def frequencies(per_image: list, key, categories: list) -> np.ndarray:
    counts = Counter(key(d) for drawn in per_image for d in drawn)
    assert set(counts) <= set(categories), set(counts) - set(categories)
    return np.array([counts[c] for c in categories])


def negative_share(per_image: list) -> tuple[float, int]:
    """The share of negative magnitudes among the signed ops' nonzero ones, and their number."""
    signed = [m < 0 for drawn in per_image for op, m in drawn if op in SIGNED and m != 0]
    return float(np.mean(signed)), len(signed)


@pytest.mark.parametrize("policy", ["trivialaugment", "randaugment"])
def test_ops_bins_and_signs_are_drawn_like_torchvision(policy):
    torch.manual_seed(5)
    theirs = torchvision_draws(REFERENCES[policy](), 3000)
    aug = AutoAugment(policy)
    ours = our_draws(aug, 20000, seed=5)
    assert {len(d) for d in ours} == {len(d) for d in theirs} == {1 if policy[0] == "t" else 2}
    names = list(aug._space)  # 14 ops, Identity among them, uniform
    op_counts = [frequencies(p, lambda d: d[0], names) for p in (ours, theirs)]
    # each image's magnitude bin: uniform over 31 (TrivialAugment), fixed at 9 (RandAugment)
    bins = aug._space["Brightness"][0](31, 32, 32).tolist()
    brightness = [[d for d in drawn if d[0] == "Brightness"] for drawn in ours]
    bin_counts = frequencies(brightness, lambda d: bins.index(abs(d[1])), list(range(31)))
    if policy == "trivialaugment":
        assert chisquare(bin_counts).pvalue > 1e-3
    else:
        assert bin_counts.nonzero()[0].tolist() == [9]
    for counts in op_counts:
        assert chisquare(counts).pvalue > 1e-3
    assert chi2_contingency(np.stack(op_counts)).pvalue > 1e-3
    for drawn in (ours, theirs):  # negative half the time, within 4 binomial sigma
        share, n = negative_share(drawn)
        assert abs(share - 0.5) < 4 * 0.5 / math.sqrt(n)


def autoaugment_expected(policy: str) -> dict[tuple, float]:
    """Each possible sequence of applied (op, |magnitude|) with its exact probability: a uniform
    sub-policy of 25, then each of its two ops with its own probability."""
    reference = REFERENCES[policy]()
    expected: Counter = Counter()
    for sub in reference._policies:
        outcomes = [[((), 1 - p), (((op, abs(magnitude_of(reference, op, b))),), p)]
                    for op, p, b in sub]
        for first, p1 in outcomes[0]:
            for second, p2 in outcomes[1]:
                expected[first + second] += p1 * p2 / len(reference._policies)
    return {sequence: p for sequence, p in expected.items() if p > 0}  # ImageNet's Equalize 0.0


def magnitude_of(reference, op: str, b: int | None) -> float:
    magnitudes = reference._AUGMENTATION_SPACE[op][0](10, 32, 32)
    return 0.0 if magnitudes is None else float(magnitudes[b])


@pytest.mark.parametrize("policy", ["autoaugment_cifar10", "autoaugment_imagenet"])
def test_autoaugment_sub_policies_and_probabilities_like_torchvision(policy):
    expected = autoaugment_expected(policy)
    torch.manual_seed(6)
    theirs = torchvision_draws(REFERENCES[policy](), 3000)
    ours = our_draws(AutoAugment(policy), 20000, seed=6)
    sequences = sorted(expected, key=lambda s: -expected[s])
    p = np.array([expected[s] for s in sequences])
    for drawn in (ours, theirs):
        seen = Counter(tuple((op, abs(m)) for op, m in d) for d in drawn)
        assert set(seen) <= set(expected), set(seen) - set(expected)
        counts = np.array([seen[s] for s in sequences])
        rare = p * len(drawn) < 5
        observed, wanted = list(counts[~rare]), list(p[~rare] * len(drawn))
        if rare.any():  # sequences expected fewer than 5 times: one cell, as chi-square needs
            observed.append(counts[rare].sum())
            wanted.append(p[rare].sum() * len(drawn))
        assert chisquare(observed, wanted).pvalue > 1e-3
        share, n = negative_share(drawn)
        assert abs(share - 0.5) < 4 * 0.5 / math.sqrt(n)


@pytest.mark.parametrize("policy", POLICIES)
def test_same_seed_same_batch_and_another_seed_another(policy):
    x = images(64, (3, 32, 32))
    aug = Augmentation(crop_padding=4, flip=True, auto_augment=policy)

    def batch(seed: int) -> torch.Tensor:
        return aug.before_normalize(x, torch.Generator().manual_seed(seed))

    assert torch.equal(batch(7), batch(7))
    assert not torch.equal(batch(7), batch(8))


def test_the_policy_runs_after_crop_and_flip_on_the_same_generator():
    x = images(64, (3, 32, 32))
    g = torch.Generator().manual_seed(9)
    cropped = Augmentation(crop_padding=4, flip=True).before_normalize(x, g)
    expected = AutoAugment("randaugment", 3, 12)(cropped, g)
    both = Augmentation(crop_padding=4, flip=True, auto_augment="randaugment",
                        randaugment_num_ops=3, randaugment_magnitude=12)
    assert torch.equal(both.before_normalize(x, torch.Generator().manual_seed(9)), expected)


@pytest.mark.parametrize(("option", "policy"), [("trivialaugment", "trivialaugment"),
                                                ("randaugment", "randaugment"),
                                                ("autoaugment", "autoaugment_cifar10")])
def test_options_compose_into_the_cifar_recipe_with_the_policy(compose_cfg, option, policy):
    augment = instantiate(compose_cfg(f"augmentation={option}").augmentation)
    assert (augment.crop_padding, augment.flip, augment.auto_augment) == (4, True, policy)
    assert repr(augment._auto_augment).startswith(f"AutoAugment({policy!r}")


def test_imagenet_policy_from_the_command_line_and_a_bad_name_in_one_line(compose_cfg):
    cfg = compose_cfg("augmentation=autoaugment",
                      "augmentation.auto_augment=autoaugment_imagenet")
    assert instantiate(cfg.augmentation)._auto_augment.policy == "autoaugment_imagenet"
    with pytest.raises(UserError) as error:
        Augmentation(auto_augment="autoaugment_svhn")
    assert "\n" not in str(error.value)
    assert all(name in str(error.value) for name in POLICIES)
    with pytest.raises(UserError, match="magnitude in 0..30"):
        AutoAugment("randaugment", magnitude=31)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("policy", POLICIES)
def test_cuda_batches_equal_the_cpu_ones_for_the_same_draws(policy):
    aug = AutoAugment(policy)
    x = images(256, (3, 32, 32))
    draws = aug.draws(len(x), "cpu", torch.Generator().manual_seed(10))
    cpu, cuda = x, x.cuda()
    for op, level in draws:
        cpu, cuda = aug.apply(cpu, op, level), aug.apply(cuda, op.cuda(), level.cuda())
    # the GPU may round a sampling coordinate or a blend differently in the last float32 bit
    assert (cpu != cuda.cpu()).float().mean() < 1e-3
