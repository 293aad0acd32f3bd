"""Every analysis and gradient flow run on the smallest member of every model family, reading only
what the model declares (`structure()`, resnet_exp/models/structure.py); an analysis a model
cannot have is refused in one line. The declared counts against the papers: test_models.py."""

from __future__ import annotations

import csv
import functools
import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from resnet_exp import runs
from resnet_exp.analysis import Analyses, cka, lesion
from resnet_exp.callbacks.gradflow import GradientFlow, unit_starts, weight_layers
from resnet_exp.core.config import CONF_DIR
from resnet_exp.core.errors import UserError
from resnet_exp.models.resnet import CifarResNet, resnet
from resnet_exp.models.small import BaselineCNN, BlockStack
from resnet_exp.models.structure import Structure, structure_of
from resnet_exp.models.transfer import transfer
from resnet_exp.models.vgg import VGG
from resnet_exp.training.module import Classifier

CIFAR8 = functools.partial(CifarResNet, depth=8, num_classes=10)
# The smallest member of each family and ablation, and the image side it takes. Each builder gets
# the path of a pretrained CIFAR ResNet-8, which only transfer learning reads.
FAMILIES = {
    "cifar_resnet": (lambda weights: CIFAR8(), 16),
    "cifar_plain": (lambda weights: CIFAR8(residual=False), 16),
    "cifar_bottleneck_B": (lambda weights: CifarResNet(11, block="bottleneck", shortcut="B",
                                                       stem_width=64, conv_bias=True), 16),
    "cifar_bottleneck_plain": (lambda weights: CifarResNet(11, block="bottleneck",
                                                           residual=False), 16),
    "resnet": (lambda weights: resnet(18, num_classes=10), 32),
    "plain_convnet": (lambda weights: resnet(18, num_classes=10, residual=False), 32),
    "vgg": (lambda weights: VGG(8, num_classes=10), 16),
    "vgg_residual_bn": (lambda weights: VGG(8, num_classes=10, residual=True,
                                            batch_norm=True), 16),
    "block_stack": (lambda weights: BlockStack(2, width=8), 16),
    "block_stack_plain": (lambda weights: BlockStack(2, width=8, residual=False), 16),
    "baseline_cnn": (lambda weights: BaselineCNN(num_classes=10), 16),
    "transfer": (lambda weights: transfer(CIFAR8, mode="finetune", weights=weights,
                                          trainable_stages=2), 16),
}
# every analysis option of conf/analysis/ (all.yaml is the four together): a new one enters here
ANALYSES = sorted(p.stem for p in (CONF_DIR / "analysis").glob("*.yaml") if p.stem != "all")
# each analysis at the cheapest settings that still run it
CHEAP = {"draws": 1, "points": 3, "grid": 2, "iterations": 2}


def analyses(*names: str) -> Analyses:
    """`analysis=<name>` for each name, as its conf/analysis/ file builds it, made cheap."""
    from hydra.utils import instantiate

    from resnet_exp.core import config

    built = {}
    for name in names:
        node = config.compose([f"analysis={name}"]).analysis[name]
        built[name] = instantiate(node, **{k: v for k, v in CHEAP.items() if k in node})
    return Analyses(images=8, **built)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Batches of 8 tiny images gain nothing from a second intra-op thread on 2 shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("transfer") / "resnet8.pt"
    torch.save(CifarResNet(depth=8, num_classes=10).state_dict(), path)
    return str(path)


def images(size: int, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("name", ANALYSES)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_analysis_runs_on_every_family_or_is_refused(family, name, pretrained):
    torch.manual_seed(0)
    build, size = FAMILIES[family]
    model = build(pretrained).eval()
    chosen = analyses(name)
    declared = model.structure()
    if name == "lesion" and not declared.blocks:  # Gitari's CNN: no block to remove
        with pytest.raises(UserError, match="BaselineCNN has no residual-style blocks"):
            chosen.check(model)
        return
    chosen.check(model)
    x, y = images(size)
    result = chosen.analyses[name].run(model, x, y)
    assert all(math.isfinite(v) for v in result["summary"].values()), result["summary"]
    if name == "lesion":
        assert [b["block"] for b in result["blocks"]] == [b.name for b in declared.blocks]
        assert len(result["k"]) == len(declared.blocks)
    if name == "cka":  # the blocks, or for a model without any the output of each stage
        matrix = torch.tensor(result["matrices"]["self"]["cka"])
        assert matrix.shape == (len(declared.blocks or declared.stages),) * 2
        torch.testing.assert_close(matrix.diagonal(), torch.ones(len(matrix), dtype=matrix.dtype))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_gradient_flow_runs_on_every_family_and_marks_its_declared_stages(family, pretrained,
                                                                         tmp_path):
    torch.manual_seed(0)
    build, size = FAMILIES[family]
    model = build(pretrained)
    module = Classifier(model, 10, optimizer=functools.partial(torch.optim.SGD, lr=0.01))
    callback = GradientFlow(every_n_steps=1, output_dir=str(tmp_path))
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, callbacks=[callback], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module, train_dataloaders=DataLoader(TensorDataset(*images(size)), batch_size=4))

    with open(tmp_path / runs.GRADIENT_FLOW_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    layers = [name for name, _ in weight_layers(model)]
    assert [r["layer"] for r in rows] == layers and all(r["steps"] == "2" for r in rows)
    assert all(float(r["mean_abs_grad"]) > 0 for r in rows if r["layer"] != "fc"), rows
    # a mark where each declared part that has trained weight layers begins, but the first
    parts = {model.structure().unit_of(name) for name in layers}
    assert None not in parts and len(callback.unit_starts) == len(parts) - 1 > 0
    assert (tmp_path / runs.FIGURES_DIR / "gradient_flow.png").is_file()


def test_gradient_flow_marks_where_each_stage_of_a_cifar_resnet_begins():
    names = [name for name, _ in weight_layers(CIFAR8())]
    assert names == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1",
                     "layer2.0.conv2", "layer3.0.conv1", "layer3.0.conv2", "fc"]
    assert unit_starts(CIFAR8(), names) == [1, 3, 5, 7]  # layer1, layer2, layer3, the head
    assert unit_starts(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), ["0", "1"]) == []


def test_a_model_that_declares_nothing_is_refused_the_analyses_that_read_its_parts():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))
    assert structure_of(net) == Structure()
    assert lesion.blocks(net) == () and cka.layers(net) == []
    for name, message in (("lesion", "no residual-style blocks"), ("cka", "no blocks or stages")):
        with pytest.raises(UserError, match=f"{name}: Sequential has {message}"):
            analyses(name).check(net)
    analyses("landscape", "sharpness").check(net)  # they need no parts
