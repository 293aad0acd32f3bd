"""Peak memory of a few ResNet-56 training steps, by a bare loop or by the framework.

    python scripts/bench_memory.py bare --steps 10 -- data=imagefolder data.root=DIR
    python scripts/bench_memory.py framework --steps 10 -- model=resnet56 augmentation=standard

Run it in a fresh process, one kind per process: a process's peak cannot be reset, so it counts
everything the process did before. `scripts/bench.py --parts memory` runs it once per kind.

  bare       torch, torchvision and the project's `CifarResNet`, no Trainer and no Hydra:
             decodes the images with torchvision into one uint8 tensor, as a hand-written loop
             would, trains `CifarResNet(depth=56)` with SGD for STEPS batches of 128, then runs 2
             inference batches of 256. Of the overrides it reads only `data.root=DIR`, an
             ImageFolder tree (DIR/<split>/<class>/*.jpg); without one, 60,000 random 32x32
             images.
  framework  `python -m resnet_exp OVERRIDES` as a run builds it (resnet_exp.train.assemble),
             with `callbacks=lean` and its trainer cut to one epoch of STEPS training batches
             and 2 validation batches: a real Trainer with its callbacks, logger and checkpoints.

Prints one JSON line: {"rss_mb": peak resident memory in MB, "cuda_mb": CUDA max allocated in
MB, on a GPU only}. The GPU is used when there is one.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started its program. Linux's ru_maxrss
    would also count the parent's peak before the fork that started this process."""
    try:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024  # kB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def load_images(root: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image under `root`'s splits decoded into one uint8 tensor, and the labels; as the
    Synthetic set holds them (60,000 uint8 32x32 images) when there is no `root`."""
    if root is None:
        x = torch.randint(0, 256, (60000, 3, 32, 32), dtype=torch.uint8)
        return x, torch.randint(0, 10, (60000,))
    from torchvision.io import ImageReadMode, decode_jpeg

    files = sorted(Path(root).glob("*/*/*.jpg"))
    x = torch.empty((len(files), 3, 32, 32), dtype=torch.uint8)
    for start in range(0, len(files), 1024):
        chunk = [torch.frombuffer(bytearray(f.read_bytes()), dtype=torch.uint8)
                 for f in files[start: start + 1024]]
        x[start: start + len(chunk)] = torch.stack(decode_jpeg(chunk, mode=ImageReadMode.RGB))
    names = sorted({f.parent.name for f in files})
    return x, torch.tensor([names.index(f.parent.name) for f in files])


def bare_run(overrides: list[str], steps: int, device: torch.device) -> None:
    from resnet_exp.models.resnet import CifarResNet

    root = next((o.split("=", 1)[1] for o in overrides if o.startswith("data.root=")), None)
    x, y = load_images(root)
    mean = torch.tensor([0.4914, 0.4822, 0.4465], device=device)[:, None, None]
    std = torch.tensor([0.2470, 0.2435, 0.2616], device=device)[:, None, None]
    model = CifarResNet(depth=56).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    order = torch.randperm(len(x))
    for step in range(steps):
        rows = order[step * 128: (step + 1) * 128]
        batch = (x[rows].to(device).float() / 255 - mean) / std
        loss = F.cross_entropy(model(batch), y[rows].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.inference_mode():
        for step in range(2):
            rows = order[step * 256: (step + 1) * 256]
            model((x[rows].to(device).float() / 255 - mean) / std).argmax(1)


def framework_run(overrides: list[str], steps: int, out: Path) -> None:
    # imported here: the bare kind must not pay for the Trainer and Hydra
    from resnet_exp.core.config import compose
    from resnet_exp.train import assemble

    trainer = ["++trainer.max_epochs=1", f"++trainer.limit_train_batches={steps}",
               "++trainer.limit_val_batches=2", "++trainer.num_sanity_val_steps=0",
               "++trainer.enable_progress_bar=false"]
    parts = assemble(compose(["callbacks=lean", *overrides, *trainer], out), testing=False)
    parts.trainer.fit(parts.module, datamodule=parts.datamodule)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=("bare", "framework"),
                   help="the bare loop or the framework (one per process)")
    p.add_argument("--steps", type=int, default=10, help="training steps (default: 10)")
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                   help="config overrides as `python -m resnet_exp` takes them, after `--`")
    return p.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.kind == "bare":
        bare_run(args.overrides, args.steps, device)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as out:
            framework_run(args.overrides, args.steps, Path(out))
    result = {"rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        result["cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
