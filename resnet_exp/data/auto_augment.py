"""TrivialAugmentWide, RandAugment and AutoAugment on a whole uint8 batch, each image its own draw.

torchvision's v2 transforms draw one op and magnitude per call, so a batch costs Python calls per
image: 4,400-8,500 32x32 images/s on one CPU thread, short of the 10,000 that feed ResNet-20's
training 20 times over. Here every image draws its op(s) and magnitude as torchvision draws them
per image; the batch is then grouped by op and each op runs once on its images with per-image
parameters: an inverse affine matrix each for the geometric ops (one grid_sample for all five),
blend factors, bit masks and thresholds for the others. 23,000-49,000 images/s on one thread
(scripts/bench_auto_augment.py), and each op equals torchvision's functional op on each image,
bit for bit on the CPU (tests/test_auto_augment.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from resnet_exp.core.errors import UserError

POLICIES = ("trivialaugment", "randaugment", "autoaugment_cifar10", "autoaugment_imagenet")


def inverse_affine(center: tuple[float, float], angle: float, translate: tuple[float, float],
                   shear: tuple[float, float]) -> list[float]:
    """torchvision's `_get_inverse_affine_matrix` at scale 1, the same float64 steps in the same
    order: the output-to-input pixel map of translate x centre x rotate x shear x centre^-1, in
    degrees and in pixels from the image centre, as 6 numbers (a 2 x 3 matrix)."""
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    (cx, cy), (tx, ty) = center, translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -(a * math.tan(sx) + math.sin(rot))
    c = math.sin(rot - sy) / math.cos(sy)
    d = math.cos(rot) - c * math.tan(sx)
    m = [d, -b, 0.0, -c, a, 0.0]
    m[2] += cx - m[0] * (cx + tx) - m[1] * (cy + ty)
    m[5] += cy - m[3] * (cx + tx) - m[4] * (cy + ty)
    return m


def parameters(op: str, magnitude: float, h: int, w: int) -> list[float]:
    """What op `op` needs at a (signed) magnitude, from the arguments torchvision's
    `_apply_image_or_video_transform` passes its functional op, computed the same way."""
    if op in ("ShearX", "ShearY"):
        shear = math.degrees(math.atan(magnitude))
        # centre [0, 0] is the top-left corner, as in the AutoAugment paper's code
        return inverse_affine((-0.5 * w, -0.5 * h), 0.0, (0.0, 0.0),
                              (shear, 0.0) if op == "ShearX" else (0.0, shear))
    if op in ("TranslateX", "TranslateY"):
        shift = float(int(magnitude))  # whole pixels, truncated towards 0
        return inverse_affine((0.0, 0.0), 0.0, (shift, 0.0) if op == "TranslateX" else
                              (0.0, shift), (0.0, 0.0))
    if op == "Rotate":  # rotate_image turns the other way than affine_image
        return inverse_affine((0.0, 0.0), -(magnitude % 360), (0.0, 0.0), (0.0, 0.0))
    if op in ("Brightness", "Color", "Contrast", "Sharpness"):
        factor = 1.0 + magnitude
        return [factor, 1.0 - factor]  # the image's weight and the other's, as `_blend` has them
    if op == "Posterize":
        bits = int(magnitude)
        return [255 if bits >= 8 else ((1 << bits) - 1) << (8 - bits)]
    if op == "Solarize":
        return [255.0 * magnitude]
    return []


def _per_image(p: torch.Tensor) -> torch.Tensor:
    return p.view(-1, 1, 1, 1)


def _fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """a * b + c in float32 rounded once, as ATen's vectorised `add_(other, alpha=)` computes it
    (a fused multiply-add): in float64 the product of two float32 is exact, so only the sum
    rounds, to float64 and then float32 (the two roundings differ from one only at a float32 tie,
    which these 8-bit pixel sums practically never land on)."""
    return (a.double() * b.double() + c.double()).float()


def _blend(x: torch.Tensor, other: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """torchvision's `_blend`: x * factor + other * (1 - factor), clamped, truncated to uint8."""
    mixed = _fma(other, _per_image(p[:, 1]), x.float() * _per_image(p[:, 0]))
    return mixed.clamp_(0, 255).to(torch.uint8)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """torchvision's grayscale (ITU-R 601-2 luma) of uint8 images, as floats to blend with."""
    return TF.rgb_to_grayscale(x).float()


def _affine(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """affine_image's and rotate_image's tensor path with a 2 x 3 inverse matrix per image: its
    `_affine_grid` (pixel-centred base grid times the matrix scaled to [-1, 1]), grid_sample with
    nearest pixels and zero fill, rounded back to uint8. rotate_image takes torch.rot90 for 90,
    180 and 270 degrees, which this grid reproduces exactly."""
    n, _, h, w = x.shape
    theta = p.view(n, 2, 3)
    device = x.device
    base = torch.empty(1, h, w, 3, device=device)
    base[..., 0].copy_(torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, w, device=device))
    base[..., 1].copy_(torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, h, device=device)[:, None])
    base[..., 2].fill_(1)
    scale = torch.tensor([0.5 * w, 0.5 * h], device=device)
    grid = base.view(1, h * w, 3).expand(n, -1, -1).bmm(theta.transpose(1, 2) / scale)
    out = F.grid_sample(x.float(), grid.view(n, h, w, 2), mode="nearest", padding_mode="zeros",
                        align_corners=False)
    return out.round_().to(torch.uint8)


def _brightness(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return (x.float() * _per_image(p[:, 0])).clamp_(0, 255).to(torch.uint8)


def _color(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return x if x.shape[1] == 1 else _blend(x, _gray(x), p)


def _contrast(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), p)


def _sharpness(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """adjust_sharpness_image: blend with the 3 x 3 smoothed image (PIL's SMOOTH kernel, 5 in the
    middle, /13), rounded, inside a border that keeps its pixels."""
    c, h, w = x.shape[1:]
    if h <= 2 or w <= 2:
        return x
    a, b = 1.0 / 13.0, 5.0 / 13.0
    kernel = torch.tensor([[a, a, a], [a, b, a], [a, a, a]], device=x.device).expand(c, 1, 3, 3)
    out = x.float()
    smooth = F.conv2d(out, kernel, groups=c).round_()
    inner = out[..., 1:-1, 1:-1]
    inner.copy_(_fma(smooth - inner, _per_image(p[:, 1]), inner))
    return out.clamp_(0, 255).to(torch.uint8)


def _posterize(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return x & _per_image(p[:, 0]).to(torch.uint8)


def _solarize(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    # compared in float32, as torchvision compares uint8 with its float threshold
    return torch.where(x >= _per_image(p[:, 0]), x.bitwise_not(), x)


# Each op's batched kernel, taking its per-image parameters; the ops without parameters are
# torchvision's own kernels, which already work image by image on a batch.
KERNELS = {
    "Identity": None, "ShearX": _affine, "ShearY": _affine, "TranslateX": _affine,
    "TranslateY": _affine, "Rotate": _affine, "Brightness": _brightness, "Color": _color,
    "Contrast": _contrast, "Sharpness": _sharpness, "Posterize": _posterize,
    "Solarize": _solarize, "AutoContrast": lambda x, p: TF.autocontrast(x),
    "Equalize": lambda x, p: TF.equalize(x), "Invert": lambda x, p: TF.invert(x),
}
OPS = tuple(KERNELS)


class AutoAugment:
    """torchvision v2's TrivialAugmentWide, RandAugment or AutoAugment, drawn per image, on a
    uint8 N x C x H x W batch (C 1 or 3) on any device, from `generator`.

    policy: "trivialaugment" (Mueller & Hutter 2021, arXiv 2103.10158: one op, uniform bin of
        num_magnitude_bins), "randaugment" (Cubuk et al. 2020, arXiv 1909.13719: num_ops uniform
        ops at bin `magnitude`), "autoaugment_cifar10" or "autoaugment_imagenet" (Cubuk et al.
        2019, arXiv 1805.09501: a uniform sub-policy of 25, each of its two ops with its
        probability and bin of 10). Signed ops flip their sign with probability 0.5.
    """

    def __init__(self, policy: str, num_ops: int = 2, magnitude: int = 9,
                 num_magnitude_bins: int = 31) -> None:
        if policy not in POLICIES:
            raise UserError(f"auto_augment={policy!r} is not a policy: choose one of "
                            f"{', '.join(POLICIES)}")
        if policy == "randaugment" and not (num_ops >= 0 and 0 <= magnitude < num_magnitude_bins):
            raise UserError(f"randaugment with {num_ops} ops at magnitude {magnitude}: give "
                            f"0 or more ops and a magnitude in 0..{num_magnitude_bins - 1}")
        self.policy = policy
        self.num_ops = num_ops
        self.magnitude = magnitude
        self.num_bins = num_magnitude_bins
        # torchvision's own augmentation spaces and policies: the same ops, magnitude bins (its
        # float32 values bit for bit) and signs. Private attributes (`_AUGMENTATION_SPACE`,
        # `_policies`), read from torchvision 0.29; tests/test_auto_augment.py fails if they move
        if policy.startswith("autoaugment"):
            reference = v2.AutoAugment(v2.AutoAugmentPolicy(policy.split("_")[1]))
            self.num_bins = 10  # AutoAugment's magnitudes are always bins of 10
            subs = reference._policies
            self._sub_ops = torch.tensor([[OPS.index(op) for op, _, _ in s] for s in subs])
            self._sub_probs = torch.tensor([[prob for _, prob, _ in s] for s in subs])
            self._sub_bins = torch.tensor([[bin_ or 0 for _, _, bin_ in s] for s in subs])
        elif policy == "trivialaugment":
            reference = v2.TrivialAugmentWide(num_magnitude_bins)
        else:
            reference = v2.RandAugment(num_ops, magnitude, num_magnitude_bins)
        self._reference = type(reference)  # its space's lambdas do not pickle, the class does
        self._ops = torch.tensor([OPS.index(op) for op in self._space])
        self._cache: dict = {}

    @property
    def _space(self) -> dict:
        """op -> (magnitudes(num_bins, height, width) or None, signed)."""
        return self._reference._AUGMENTATION_SPACE

    def __repr__(self) -> str:
        return (f"AutoAugment({self.policy!r}, num_ops={self.num_ops}, "
                f"magnitude={self.magnitude}, num_magnitude_bins={self.num_bins})")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for op, level in self.draws(len(x), x.device, generator):
            x = self.apply(x, op, level)
        return x

    def _on(self, name: str, device: torch.device) -> torch.Tensor:
        key = (name, str(device))
        if key not in self._cache:
            self._cache[key] = getattr(self, name).to(device)
        return self._cache[key]

    def draws(self, n: int, device: torch.device, generator: torch.Generator | None = None
              ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each image's ops in the order they apply: a list of (op, level), each N long, op an
        index into OPS and level 2 x magnitude bin + 1 where the sign is negative."""

        def rand() -> torch.Tensor:
            return torch.rand(n, device=device, generator=generator)

        def randint(high: int) -> torch.Tensor:
            return torch.randint(high, (n,), device=device, generator=generator)

        def negative() -> torch.Tensor:  # torchvision: `signed and torch.rand(()) <= 0.5`
            return (rand() <= 0.5).long()

        ops = self._on("_ops", device)
        if self.policy == "trivialaugment":
            return [(ops[randint(len(ops))], 2 * randint(self.num_bins) + negative())]
        if self.policy == "randaugment":
            return [(ops[randint(len(ops))], 2 * self.magnitude + negative())
                    for _ in range(self.num_ops)]
        sub_ops, probs, bins = (self._on(k, device) for k in ("_sub_ops", "_sub_probs",
                                                              "_sub_bins"))
        sub = randint(len(sub_ops))
        slots = []
        for j in range(2):
            applies = rand() <= probs[sub, j]  # torchvision: `torch.rand(()) <= probability`
            op = torch.where(applies, sub_ops[sub, j], OPS.index("Identity"))
            slots.append((op, 2 * bins[sub, j] + negative()))
        return slots

    def table(self, op: str, h: int, w: int, device: torch.device) -> torch.Tensor:
        """`parameters` of op `op` at each level (2 x bin + negative) for h x w images, float32
        rows, as torchvision casts them."""
        key = (op, h, w, str(device))
        if key not in self._cache:
            magnitudes_fn, signed = self._space[op]
            magnitudes = magnitudes_fn(self.num_bins, h, w)
            rows = []
            for b in range(self.num_bins):
                m = 0.0 if magnitudes is None else float(magnitudes[b])
                rows += [parameters(op, m, h, w), parameters(op, -m if signed else m, h, w)]
            self._cache[key] = torch.tensor(rows, dtype=torch.float32, device=device)
        return self._cache[key]

    def apply(self, x: torch.Tensor, op: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """Op op[i] at level level[i] on image i: one kernel call per kernel present (the five
        geometric ops share one), on the images that drew it."""
        h, w = x.shape[-2:]
        counts = torch.bincount(op, minlength=len(OPS)).tolist()  # one sync per op slot
        groups: dict = {}
        for name, idx in zip(OPS, torch.argsort(op).split(counts), strict=True):
            if len(idx) and KERNELS[name] is not None:
                params = self.table(name, h, w, x.device)[level[idx]]
                groups.setdefault(KERNELS[name], []).append((idx, params))
        out = x.clone()
        for kernel, parts in groups.items():
            idx = torch.cat([i for i, _ in parts])
            out[idx] = kernel(x[idx], torch.cat([p for _, p in parts]))
        return out
