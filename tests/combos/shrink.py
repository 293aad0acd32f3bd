"""What a cell of the matrix runs: its options as overrides, each made as small as keeps what
the option is (its block, shortcut, stem; its crop; its analysis), so that a ResNet-1202 or an
ImageNet recipe trains a few batches in about a second on one CPU core.

A rule here reads the option's own keys (`tree.node`), so a new option of a group gets the
rule of its kind; an option no rule knows runs as it is.
"""

from __future__ import annotations

from pathlib import Path

from combos import matrix, tree

# Every trainer option with the smoke limits (trainer=smoke's numbers, one validation and one
# test batch): 1 epoch of 3 batches, so that a kill at batch 1 lands mid-epoch.
TRAINER = ["trainer.accelerator=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
           "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
           "trainer.num_sanity_val_steps=0", "trainer.log_every_n_steps=1"]
# Every cell: batches of 8 (16 to evaluate), one intra-op thread and deterministic algorithms (a
# killed cell's resume must reproduce its twin's metrics exactly: threads change float sums).
EVERY_CELL = ["data.batch_size=8", "data.eval_batch_size=16", "cpu_threads=1",
              "deterministic=true", *TRAINER]
# Images of generated and folder sets at 16 pixels (CIFAR-style nets keep 3 stages of it; a
# CIFAR-stem ResNet-18 costs 4x less than at 32), and the generated sets a few batches long.
SIDE = 16
SYNTHETIC_SIZES = {"num_train": 64, "num_val": 16, "num_test": 16}
# The smallest depth of each model family (the table its builder checks): a ResNet-1202 or a
# 152 keeps its block, shortcut and stem and trains as fast as the smallest of its kind.
SMALLEST = {
    # He et al. 2016 CIFAR nets: 6n+2 with basic blocks, 9n+2 with bottlenecks; n=1
    "CifarResNet": lambda node: {"depth": 11 if node.get("block") == "bottleneck" else 8},
    # torchvision's table (He et al. 2016, Table 1): 18 for basic blocks, 50 for bottlenecks
    "resnet": lambda node: {"depth": 18 if node.get("depth", 18) < 50 else 50},
    "VGG": lambda node: {"depth": 8},  # 2 + 2 x 3 stages: one block per stage
    "BlockStack": lambda node: {"num_blocks": 2},
}
# The analyses' sample sizes (conf/analysis/: 500 images, 5 lesion draws, 51 points and a 21x21
# landscape grid, 100 power iterations) cut to what runs each code path once (CKA needs 4 images).
ANALYSIS_SIZES = {"images": 8, "draws": 1, "points": 3, "grid": 3, "iterations": 3}
# Kill at the second training batch of the first epoch: last.ckpt is written mid-epoch, after
# the batch in progress, and the resume replays the rest (tests/signal_at.py).
KILL_AT = {"epoch": 0, "batch": 1}


def _model(option: str) -> list[str]:
    node, prefix = tree.node("model", option), "model."
    if "backbone" in node:  # transfer models: the backbone is what has a size
        node, prefix = node["backbone"], "model.backbone."
    smallest = SMALLEST.get(node["_target_"].rsplit(".", 1)[-1])
    return [f"{prefix}{k}={v}" for k, v in (smallest(node) if smallest else {}).items()]


def _augmentation(option: str, image_size: int) -> list[str]:
    """ImageNet recipes crop 224 of 256 pixels; on the stand-ins' 16-pixel images the same
    crops, scaled, and the files read per image (a random-resized crop needs the full image)."""
    node = tree.node("augmentation", option)
    if not node.get("random_resized_crop"):
        return []
    scale = image_size / (node.get("center_crop") or node["random_resized_crop"])
    sizes = {k: max(1, round(node[k] * scale)) for k in ("random_resized_crop", "resize",
                                                          "center_crop", "cutout_size")
             if node.get(k)}
    return [f"augmentation.{k}={v}" for k, v in sizes.items()] + ["data.in_memory=false"]


def _data(option: str, stand_in: list[str]) -> list[str]:
    """The option's stand-in files (conftest.py), and a generated set made small."""
    node = tree.node("data", option)
    small = [f"data.{k}={v}" for k, v in SYNTHETIC_SIZES.items() if k in node]
    side = [f"data.image_size={SIDE}"] if small and node["image_size"] > SIDE else []
    return [*stand_in, *small, *side]


def _analysis(option: str) -> list[str]:
    """Each size key of the option, at the top (the common `images`) or in an analysis's own
    node (`analysis.landscape.grid`)."""
    node = tree.node("analysis", option)
    nodes = {"analysis": node, **{f"analysis.{k}": v for k, v in node.items()
                                  if isinstance(v, dict)}}
    return [f"{path}.{k}={v}" for path, sub in nodes.items() for k, v in ANALYSIS_SIZES.items()
            if k in sub]


def _logger(option: str, cwd: Path) -> list[str]:
    """A store at a relative URI (MLflow's sqlite:///outputs/mlflow.db) made absolute, in the
    cell's folder: MLflow keeps one engine per URI in a process, so a relative one would go on
    writing into the folder the first cell of this process ran in."""
    args = []
    for name in option.strip("[]").split(","):
        for key, node in tree.node("logger", name).items():
            uri = node.get("tracking_uri", "") if isinstance(node, dict) else ""
            if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
                args.append(f"logger.{key}.tracking_uri=sqlite:///{cwd / uri[len('sqlite:///'):]}")
    return args


def _trainer(cell: matrix.Cell) -> list[str]:
    if cell.trainer != "ddp":
        return []
    return ["trainer.devices=2"]  # two CPU processes (matrix.refusal: never inside a local sweep)


def overrides(cell: matrix.Cell, data_args: dict[str, list[str]], cwd: Path) -> list[str]:
    """The cell's options as one run's command line (a sweep adds `launcher`), started in `cwd`.
    `data_args`: each data option's stand-in files (conftest.py), with the image size they
    have as `data.image_size=N` where it is not the option's own."""
    data = _data(cell.data, data_args.get(cell.data, []))
    sizes = [a.split("=")[1] for a in data if a.startswith("data.image_size=")]
    image_size = int(sizes[0]) if sizes else tree.node("data", cell.data)["image_size"]
    args = [f"model={cell.model}", *_model(cell.model), f"data={cell.data}", *data,
            f"augmentation={cell.augmentation}", *_augmentation(cell.augmentation, image_size),
            f"optimizer={cell.optimizer}", f"scheduler={cell.scheduler}",
            f"callbacks={cell.callbacks}", f"monitor={cell.monitor}",
            f"logger={cell.logger}", *_logger(cell.logger, cwd), f"trainer={cell.trainer}",
            *EVERY_CELL, *_trainer(cell)]
    if cell.trick:
        args.append(f"trick={cell.trick}")
    if cell.ema == "on":
        args.append("module.ema_decay=0.9")
    if cell.analysis:
        args += [f"analysis={cell.analysis}", *_analysis(cell.analysis)]
    return args


def launcher(cell: matrix.Cell) -> list[str]:
    """A sweep's own arguments: one job (the cell's options, no sweep list) under its launcher;
    joblib on two workers whatever the machine's cores (its default is one per core)."""
    if cell.launcher == matrix.NO_LAUNCHER:
        return []
    workers = ["hydra.launcher.n_jobs=2"] if cell.launcher == "joblib" else []
    return [f"hydra/launcher={cell.launcher}", *workers]


def loggers(cell: matrix.Cell) -> list[str]:
    return cell.logger.strip("[]").split(",")
