"""Every study in conf/experiment/ composes, states where it comes from, and runs end to end under
`trainer=smoke` (STYLE.md, 3 and 11).

The runs are in-process `resnet_exp.run` calls (the Python API: the CLI's Hydra composition, run
folder and records), so each costs seconds rather than a subprocess start. The studies'
datasets (CIFAR-10/100, ImageNet, a cats-vs-dogs folder) are not available to the tests, so each run
points `data` at tiny files written here in the real on-disk format (JPEG class folders, the
ImageNet layout), or, for CIFAR-100, at `data=synthetic` with its 100 classes and 32x32 images.
Batch sizes shrink where the full one would make three smoke steps of an ImageNet-sized model take a
minute on 2 CPU cores.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from conftest import CONF, dry_sweep, job_dirs, run_cli
from torchvision.io import write_jpeg

import resnet_exp
from resnet_exp import runs
from resnet_exp.core.errors import UserError
from resnet_exp.models.resnet import CifarResNet
from resnet_exp.runs import read

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def image_folder(root: Path, splits: dict[str, int], classes: list[str], size: int) -> Path:
    """JPEG files in <root>/<split>/<class>/, each class a different mean colour (learnable)."""
    gen = torch.Generator().manual_seed(0)
    for split, per_class in splits.items():
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                base = torch.tensor([(37 * c) % 256, (91 * c) % 256, (53 * c) % 256])
                noise = torch.randint(-40, 40, (3, size, size), generator=gen)
                image = (base[:, None, None] + noise).clamp(0, 255).to(torch.uint8)
                write_jpeg(image, str(folder / f"{i:04d}.jpg"))
    return root


@pytest.fixture(scope="module")
def cifar_folder(tmp_path_factory) -> Path:
    return image_folder(tmp_path_factory.mktemp("cifar10-jpeg"), {"train": 8, "test": 2},
                        CIFAR10, 32)


# The overrides each study needs to run on the tiny files; {cifar} etc. are filled in per test.
CIFAR = ["data=imagefolder", "data.root={cifar}", "data.val_size=10", "data.batch_size=4"]
SMOKE = {
    "resnet56_cifar10_steplr": CIFAR,
    "he2016_resnet56_cifar10": CIFAR,
    "cifar10_resnet18_cutout": CIFAR,
    "residual_vs_standard_blocks": CIFAR,
    "transfer_pretrain_cifar8": CIFAR,
    "imagenet_plain_vs_resnet18_cutout": ["data.root={imagenet}", "data.num_classes=2",
                                          "data.batch_size=4", "data.num_workers=0"],
    "vgg_depth_sweep_cifar100": ["data=synthetic", "data.num_classes=100", "data.num_train=200",
                                 "data.num_val=50", "data.num_test=50", "data.batch_size=4"],
    "transfer_learning": ["data.root={pets}", "data.batch_size=4", "data.max_per_class=4",
                          "data.num_workers=0"],
    "transfer_learning_cifar": [*CIFAR, "model.weights={checkpoint}"],
    # every trick at once: the ablation's widest run
    "cifar10_tricks_ablation": [*CIFAR, "trick=all"],
    "torchvision_resnet50_v2": ["data.root={imagenet}", "data.num_classes=2", "data.batch_size=4",
                                "data.num_workers=0"],
}


def smoke_run(tmp_path: Path, experiment: str, *extra: str, **paths) -> dict:
    overrides = [o.format(**paths) for o in SMOKE[experiment]]
    run = resnet_exp.run([f"experiment={experiment}", "trainer=smoke", *overrides, *extra],
                         output_dir=tmp_path)
    assert run.status == read.read_json(tmp_path / runs.RUN_FILE)["status"] == "finished"
    assert run.metrics["epochs"] == 1 and 0.0 <= run.metrics["test/acc"] <= 1.0
    return run.metrics


def test_every_experiment_has_a_smoke_run_here():
    assert set(EXPERIMENTS) - {"cifar10_fast"} <= set(SMOKE), "add its overrides to SMOKE"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_header_names_command_source_and_cost(experiment):
    text = (CONF / "experiment" / f"{experiment}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    header = text.split("\ndefaults:")[0]
    assert f"experiment={experiment}" in header, "the command that runs it"
    assert "Source" in header and "Cost" in header


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_and_each_sweep_point_compose(compose_cfg, in_tmp, experiment):
    """The whole sweep, as `-m experiment=<it>` expands its hydra.sweeper.params (Hydra's own
    sweeper, dry: conftest.dry_sweep), composes with every interpolation resolved."""
    cfg = compose_cfg(f"experiment={experiment}")
    assert cfg.name and not cfg.name.startswith(f"{cfg.hydra.runtime.choices.model}_"
                                                 f"{cfg.hydra.runtime.choices.data}")
    jobs = dry_sweep(["-m", f"experiment={experiment}"])
    names = {job["name"] for job in jobs}
    assert len(names) == len(jobs), f"each sweep point gets its own run name: {sorted(names)}"


@pytest.mark.slow
@pytest.mark.parametrize("experiment", [  # the blocks study: every job of its sweep, below
    "resnet56_cifar10_steplr", "he2016_resnet56_cifar10", "cifar10_resnet18_cutout",
    "vgg_depth_sweep_cifar100", "cifar10_tricks_ablation",
])
def test_cifar_studies_run_under_smoke(tmp_path, cifar_folder, experiment):
    smoke_run(tmp_path, experiment, cifar=cifar_folder)


# the analyses on a handful of images, at the cheapest settings that still run each one (16
# images took a ResNet-56 job 2x as long: the lesion alone is 55 forward passes)
ANALYSIS = ["analysis=all", "analysis.images=4", "analysis.lesion.draws=1",
            "analysis.landscape.points=3", "analysis.landscape.grid=2",
            "analysis.sharpness.iterations=2"]


@pytest.mark.parametrize("experiment", ["residual_vs_standard_blocks", "vgg_depth_sweep_cifar100"])
def test_the_residual_studies_say_how_to_run_their_analyses(experiment):
    text = (CONF / "experiment" / f"{experiment}.yaml").read_text().split("\ndefaults:")[0]
    assert "analysis=all" in text, "the header says how to run the analyses"


@pytest.mark.slow
def test_the_vgg_study_runs_its_analyses_when_asked(tmp_path):
    """`analysis=all` runs the four analyses on the run's best checkpoint once it has finished:
    their results in RUN_DIR/analysis/, which the report reads as analysis/<key> (the blocks
    study's: every job of its sweep, below)."""
    import json

    smoke_run(tmp_path, "vgg_depth_sweep_cifar100", *ANALYSIS)
    # VGG38: 3 stages of 5 blocks and a downsampling one
    lesion = json.loads((tmp_path / "analysis" / "lesion.json").read_text())
    assert len(lesion["blocks"]) == 18 and lesion["images"] == 4
    assert len(json.loads((tmp_path / "analysis" / "landscape.json").read_text())["loss_2d"]) == 2
    for name in ("sharpness", "cka"):
        assert "summary" in json.loads((tmp_path / "analysis" / f"{name}.json").read_text())
    assert read.read_json(tmp_path / runs.RUN_FILE)["status"] == "finished"


@pytest.mark.slow
def test_every_job_of_the_blocks_study_runs_every_analysis(tmp_path, cifar_folder):
    """The whole sweep as its header runs it (the command line: `-m`), a few batches a job, no
    figures: the block stack, ResNet-20 and ResNet-56, each plain and residual, all finish with
    the four analyses, the stack's lesion included (its blocks are those it declares,
    models/structure.py)."""
    import json

    overrides = [o.format(cifar=cifar_folder) for o in SMOKE["residual_vs_standard_blocks"]]
    result = run_cli(["-m", "experiment=residual_vs_standard_blocks", "trainer=smoke", *overrides,
                      *ANALYSIS, "callbacks=lean", "hydra.sweep.dir=sweep"],
                     tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_dirs(tmp_path / "sweep")
    blocks = {"block_stack": 10, "resnet20": 9, "resnet56": 27}  # conf/model/<name>.yaml
    assert len(jobs) == 2 * len(blocks)
    for job in jobs:
        record = read.read_json(job / runs.RUN_FILE)
        assert record["status"] == "finished", (job.name, record.get("error"))
        for name in ("lesion", "landscape", "sharpness", "cka"):  # conf/analysis/all.yaml
            assert "summary" in json.loads((job / "analysis" / f"{name}.json").read_text())
        lesion = json.loads((job / "analysis" / "lesion.json").read_text())
        assert len(lesion["blocks"]) == blocks[read.read_choices(job)["model"]], job.name
        landscape = json.loads((job / "analysis" / "landscape.json").read_text())
        assert len(landscape["loss_2d"]) == 2, job.name  # analysis.landscape.grid=2


def test_an_analysis_the_model_cannot_have_is_refused_before_training(tmp_path):
    with pytest.raises(UserError, match="BaselineCNN has no residual-style blocks"):
        resnet_exp.run(["model=baseline_cnn", "analysis=lesion", "trainer=smoke"],
                       output_dir=tmp_path)
    assert not (tmp_path / runs.CHECKPOINT_DIR).exists()
    assert read.read_json(tmp_path / runs.RUN_FILE)["status"] == "failed"


@pytest.mark.slow
def test_imagenet_study_runs_under_smoke(tmp_path):
    imagenet = image_folder(tmp_path / "imagenet", {"train": 6, "val": 2},
                            ["n01440764", "n02102040"], 64)
    # the Cutout arm of the sweep: 112x112 holes on the 224x224 random-resized crops
    smoke_run(tmp_path / "run", "imagenet_plain_vs_resnet18_cutout", "augmentation=imagenet_cutout",
              imagenet=imagenet)


@pytest.mark.slow
def test_the_resnet50_v2_recipe_runs_under_smoke(tmp_path):
    """torchvision's IMAGENET1K_V2 recipe end to end on a tiny ImageNet-layout folder: 176-px
    TrivialAugment crops, random erasing, MixUp/CutMix, EMA, evaluation at 232 -> 224."""
    imagenet = image_folder(tmp_path / "imagenet", {"train": 6, "val": 2},
                            ["n01440764", "n02102040"], 64)
    metrics = smoke_run(tmp_path / "run", "torchvision_resnet50_v2", imagenet=imagenet)
    assert "test/acc_ema" in metrics and "val/acc_ema_best" in metrics


@pytest.mark.slow
def test_offline_transfer_runs_end_to_end(tmp_path, cifar_folder):
    """Pretrain on the 8 classes without cat and dog, then transfer that checkpoint in each mode."""
    pretrain = smoke_run(tmp_path / "pretrain", "transfer_pretrain_cifar8", cifar=cifar_folder)
    resnet20 = sum(p.numel() for p in CifarResNet(20, num_classes=8).parameters())
    assert pretrain["params/total"] == resnet20
    checkpoint = tmp_path / "pretrain" / runs.CHECKPOINT_DIR / "best.ckpt"
    trainable = {}
    for mode in ("scratch", "feature_extract", "finetune"):
        metrics = smoke_run(tmp_path / mode, "transfer_learning_cifar", f"model.mode={mode}",
                            cifar=cifar_folder, checkpoint=checkpoint)
        trainable[mode] = metrics["params/trainable"]
        assert metrics["params/total"] == resnet20 - 6 * 65  # a 2-class head of 64 + 1
    assert trainable["feature_extract"] == 64 * 2 + 2
    assert trainable["feature_extract"] < trainable["finetune"] < trainable["scratch"]


@pytest.mark.slow
def test_online_transfer_runs_with_cached_torchvision_weights(tmp_path, monkeypatch):
    """experiment=transfer_learning as a user with internet runs it: torchvision's ResNet-18
    weights come from torch's hub cache (here a stand-in file under its real name, since this
    machine has no internet) onto a cats-vs-dogs folder of 224x224 JPEGs."""
    from torchvision.models import ResNet18_Weights

    from resnet_exp.models.resnet import resnet

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    url = ResNet18_Weights.IMAGENET1K_V1.url
    torch.save(resnet(18, num_classes=1000).state_dict(), cache / url.rsplit("/", 1)[1])
    pets = image_folder(tmp_path / "pets", {"train": 4, "val": 2}, ["cat", "dog"], 64)
    metrics = smoke_run(tmp_path / "run", "transfer_learning", pets=pets)
    assert metrics["params/trainable"] == sum(  # layer4 + the 2-class head
        p.numel() for p in resnet(18, num_classes=2).layer4.parameters()) + 512 * 2 + 2


def test_smoke_needs_no_other_change_than_trainer(compose_cfg):
    """A user's `trainer=smoke` shortens a study to the smoke length, whatever its own budget."""
    run = functools.partial(compose_cfg, "trainer=smoke")
    for experiment in EXPERIMENTS:
        trainer = run(f"experiment={experiment}").trainer
        assert trainer.max_epochs == 1 and trainer.get("max_steps", -1) == -1, experiment
