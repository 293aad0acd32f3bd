"""Images/s of the batched auto-augment policies against torchvision v2's per-image transforms.

    python scripts/bench_auto_augment.py                 # ~15 s on one CPU thread
    python scripts/bench_auto_augment.py --batches 100 --device cuda

Batches of 128 random 3x32x32 uint8 images on one intra-op thread: each policy batched
(resnet_exp/data/auto_augment.py) and torchvision's transform called image by image; then
ResNet-20's training images/s on the same thread (forward, backward and SGD step on a batch of
128), the rate the data path must feed 20 times over. Each figure is the median batch's rate, so
that moments when other jobs hold the core do not count. Target: batched >= 20x ResNet-20's
training rate, and >= 10,000 images/s on one CPU thread.
"""

from __future__ import annotations

import argparse
import time
from statistics import median

import torch
from torchvision.transforms import v2

from resnet_exp.data.auto_augment import POLICIES, AutoAugment
from resnet_exp.models.resnet import CifarResNet

BATCH = 128
TARGET = 10_000  # images/s: 20x ResNet-20's ~500 on one thread of the 2-core development machine
TORCHVISION = {"trivialaugment": v2.TrivialAugmentWide, "randaugment": v2.RandAugment,
               "autoaugment_cifar10": lambda: v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10),
               "autoaugment_imagenet": lambda: v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)}


def rate(step, batches: int, device: torch.device, warmup: int = 3) -> float:
    """Images/s of `step()` (one batch of BATCH) at its median batch time."""
    times = []
    for i in range(warmup + batches):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return BATCH / median(times)


def resnet20_training(batches: int, device: torch.device) -> float:
    model = CifarResNet(depth=20).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(BATCH, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (BATCH,), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    return rate(step, batches, device, warmup=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30, help="measured batches per figure")
    parser.add_argument("--device", default="cpu", help="where the batched policies run")
    parser.add_argument("--threads", type=int, default=1, help="intra-op CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x = torch.randint(0, 256, (BATCH, 3, 32, 32), dtype=torch.uint8)
    generator = torch.Generator(device).manual_seed(0)
    print(f"batches of {BATCH} 3x32x32 uint8 images, {args.threads} CPU thread(s), "
          f"batched on {device}")
    print(f"{'policy':<22}{'batched img/s':>15}{'torchvision img/s':>19}{'speed-up':>10}")
    on_device = x.to(device)
    batched = {}
    for policy in POLICIES:
        ours, theirs = AutoAugment(policy), TORCHVISION[policy]()
        batched[policy] = rate(lambda f=ours: f(on_device, generator), args.batches, device)
        per_image = rate(lambda f=theirs: torch.stack([f(image) for image in x]),
                         max(3, args.batches // 5), torch.device("cpu"))
        print(f"{policy:<22}{batched[policy]:>15,.0f}{per_image:>19,.0f}"
              f"{batched[policy] / per_image:>9.1f}x")
    train = resnet20_training(max(3, args.batches // 4), device)
    print(f"ResNet-20 training on {device} (forward, backward, SGD; batch {BATCH}): "
          f"{train:,.0f} img/s")
    for policy, value in batched.items():
        met = value >= max(TARGET, 20 * train)
        print(f"  {policy:<22}{value / train:>7.1f}x ResNet-20's rate "
              f"(target >= 20x and >= {TARGET:,} img/s: {'met' if met else 'NOT met'})")


if __name__ == "__main__":
    main()
