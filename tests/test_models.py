"""The model zoo against outside truth: the papers' and source studies' parameter counts,
torchvision's weight metadata and state dicts, and proofs of the ablations, over every
conf/model/*.yaml."""

from __future__ import annotations

import functools
import re
import warnings
from pathlib import Path

import hydra
import pytest
import pytorch_lightning as pl
import torch
import torchvision
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.models import resnet as tv

from resnet_exp.core.config import CONF_DIR
from resnet_exp.core.errors import UserError
from resnet_exp.models.resnet import CifarResNet, NoShortcut, resnet
from resnet_exp.models.small import BlockStack
from resnet_exp.models.vgg import VGG
from resnet_exp.training.module import Classifier

CONF = CONF_DIR / "model"


def load(name: str) -> DictConfig:
    """conf/model/<name>.yaml under the model configs its defaults list names, merged as Hydra
    composes them (plain_convnet.yaml is plain18.yaml under the Resnet_Imagenet_with_Cutout
    README's name; `/_base_model@_here_` is conf/_base_model.yaml)."""
    path = CONF.parent / f"{name[1:].split('@')[0]}.yaml" if name.startswith("/") \
        else CONF / f"{name}.yaml"
    cfg = OmegaConf.load(path)
    defaults = list(cfg.pop("defaults", []))
    if "_self_" not in defaults:
        defaults.append("_self_")
    return OmegaConf.merge(*(cfg if d == "_self_" else load(d) for d in defaults))


# Architectures only: the transfer wrappers (a `backbone` node around one of these) are checked
# in test_transfer.py.
CONFIGS = sorted(p.stem for p in CONF.glob("*.yaml") if "backbone" not in load(p.stem))

TV_PARAMS = {d: getattr(torchvision.models, f"ResNet{d}_Weights").IMAGENET1K_V1.meta["num_params"]
             for d in (18, 34, 50, 101, 152)}
# The three 1x1 projections + BN that ResNet-18/34 have and plain-18/34 lack.
PROJECTIONS_18_34 = sum(i * o + 2 * o for i, o in ((64, 128), (128, 256), (256, 512)))


def _conv(i, o, k, bias=True):
    return i * o * k * k + (o if bias else 0)


def _bn(c):
    return 2 * c


# Gitari's course report (docs/studies.md#sources), counted layer by layer from its Keras code
# (Keras layers carry biases).
BLOCK_STACK_10 = (_conv(3, 64, 7) + _bn(64) + 10 * 2 * (_conv(64, 64, 3) + _bn(64))
                  + 64 * 128 + 128 + 128 * 10 + 10)
BASELINE_CNN = (sum(_conv(i, o, 3) + _bn(o) + _conv(o, o, 3)
                    for i, o in ((3, 32), (32, 64), (64, 128), (128, 256)))
                + 256 * 512 + 512 + 512 * 10 + 10)

# config -> (num_classes, published parameters, source). A float is millions, checked to the
# precision it was published with.
PUBLISHED = {
    "resnet20": (10, 0.27, "He et al. 2016, Table 6"),
    "resnet32": (10, 0.46, "He et al. 2016, Table 6"),
    "resnet44": (10, 0.66, "He et al. 2016, Table 6"),
    "resnet56": (10, 0.85, "He et al. 2016, Table 6"),
    "resnet110": (10, 1.7, "He et al. 2016, Table 6"),
    "resnet1202": (10, 19.4, "He et al. 2016, Table 6"),
    # Option A shortcuts have no parameters, so the plain nets count the same.
    "plain20": (10, 0.27, "He et al. 2016, Table 6 (ResNet-20 less its parameter-free shortcuts)"),
    "plain56": (10, 0.85, "He et al. 2016, Table 6 (ResNet-56 less its parameter-free shortcuts)"),
    "resnet18": (1000, TV_PARAMS[18], "torchvision ResNet18_Weights meta"),
    "resnet34": (1000, TV_PARAMS[34], "torchvision ResNet34_Weights meta"),
    "resnet50": (1000, TV_PARAMS[50], "torchvision ResNet50_Weights meta"),
    "resnet101": (1000, TV_PARAMS[101], "torchvision ResNet101_Weights meta"),
    "resnet152": (1000, TV_PARAMS[152], "torchvision ResNet152_Weights meta"),
    "plain18": (1000, TV_PARAMS[18] - PROJECTIONS_18_34, "torchvision ResNet-18 less projections"),
    "plain34": (1000, TV_PARAMS[34] - PROJECTIONS_18_34, "torchvision ResNet-34 less projections"),
    "plain_convnet": (1000, TV_PARAMS[18] - PROJECTIONS_18_34,
                      "Resnet_Imagenet_with_Cutout Plain_Convnet.py"),
    "resnet18_cifar": (10, 11_173_962, "kuangliu/pytorch-cifar ResNet18, used by the Cutout code"),
    "resnet56_bottleneck": (10, 596_810, "Khalaf's ResNet-56"),
    "vgg08": (100, 59_716, "Arenas López"),
    "vgg38": (100, 336_196, "Arenas López"),
    "vgg68": (100, 616_900, "Arenas López (with BN)"),
    "vgg": (100, 338_500, "Arenas López: VGG38 with BN; skips add no parameters"),
    "block_stack": (10, BLOCK_STACK_10, "Gitari simulation 4, counted from its layers"),
    "baseline_cnn": (10, BASELINE_CNN, "Gitari simulation 5, counted from its layers"),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Batches of 2 gain nothing from intra-op threads, and on 2 shared cores their barriers made
    this file 6x slower (110 s instead of 17 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(name: str, num_classes: int = 10, in_channels: int = 3, **overrides) -> nn.Module:
    """Instantiate conf/model/<name>.yaml as Hydra does, under a minimal `data` node."""
    cfg = OmegaConf.merge(
        {"data": {"num_classes": num_classes, "in_channels": in_channels}},
        {"model": load(name)},
        {"model": overrides},
    )
    return hydra.utils.instantiate(cfg.model)


def imagenet_style(name: str) -> bool:
    cfg = load(name)
    return cfg._target_.endswith(".resnet") and not cfg.get("cifar_stem", False)


def test_every_config_has_a_published_count():
    assert set(CONFIGS) == set(PUBLISHED), "add the new config's source and count to PUBLISHED"
    assert {"resnet20", "resnet1202", "resnet50", "vgg68", "block_stack"} <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_has_the_published_parameter_count(name):
    num_classes, published, source = PUBLISHED[name]
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        count = n_params(build(name, num_classes=num_classes))
    if isinstance(published, float):
        decimals = len(str(published).split(".")[1])
        assert round(count / 1e6, decimals) == published, f"{count:,} vs {published}M ({source})"
    else:
        assert count == published, f"{count:,} vs {published:,} ({source})"


@pytest.mark.parametrize("name", CONFIGS)
def test_config_outputs_logits_per_class(name):
    model = build(name, num_classes=7).eval()
    size = 64 if imagenet_style(name) else 32
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 7)


@pytest.mark.parametrize("name", [n for n in CONFIGS if not imagenet_style(n)])
def test_cifar_style_models_take_8x8_one_channel_digits(name):
    model = build(name, num_classes=10, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_imagenet_resnet_takes_224_and_one_channel_input():
    model = resnet(18, num_classes=5, in_channels=1).eval()
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    with torch.no_grad():
        assert model(torch.randn(1, 1, 224, 224)).shape == (1, 5)


def test_every_model_config_composes_in_the_real_config_tree(compose_cfg):
    for name in CONFIGS:
        cfg = compose_cfg(f"model={name}")
        assert cfg.model.num_classes == cfg.data.num_classes
        assert cfg.model.in_channels == cfg.data.in_channels
        assert "weights" in cfg.model  # so model.weights=... needs no "+"


@pytest.mark.parametrize("depth", sorted(TV_PARAMS))
def test_torchvision_state_dicts_load_strictly(depth):
    with torch.device("meta"):
        reference = getattr(torchvision.models, f"resnet{depth}")()
        ours = resnet(depth)
    ours.load_state_dict(reference.state_dict(), strict=True)
    shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert shapes == {k: v.shape for k, v in reference.state_dict().items()}


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_weights_compute_the_same_function(depth):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, f"resnet{depth}")().eval()
    ours = resnet(depth).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


# --- each model declares its structure (resnet_exp/models/structure.py) ------------------------

# config -> (stages, blocks, source); the transfer configs declare their backbone's.
STRUCTURES = {
    **{f"resnet{6 * n + 2}": (3, 3 * n, "He et al. 2016, sec 4.2: 3 stages of n blocks, 6n+2")
       for n in (3, 5, 7, 9, 18, 200)},
    "plain20": (3, 9, "He et al. 2016, sec 4.2: the plain net has the same blocks"),
    "plain56": (3, 27, "He et al. 2016, sec 4.2: the plain net has the same blocks"),
    "resnet56_bottleneck": (3, 18, "9n+2 with bottlenecks (He et al. 2016b): n = 6"),
    **{f"resnet{d}": (4, n, "He et al. 2016, Table 1")
       for d, n in ((18, 8), (34, 16), (50, 16), (101, 33), (152, 50))},
    "resnet18_cifar": (4, 8, "He et al. 2016, Table 1 (the Cutout paper's stem)"),
    "plain18": (4, 8, "He et al. 2016, Table 1 and Fig. 3"),
    "plain34": (4, 16, "He et al. 2016, Table 1 and Fig. 3"),
    "plain_convnet": (4, 8, "Resnet_Imagenet_with_Cutout Plain_Convnet.py: plain-18"),
    "vgg08": (3, 3, "Arenas López: B = 0, one reduction block per stage"),
    "vgg38": (3, 18, "Arenas López: B = 5, and a reduction block per stage"),
    "vgg68": (3, 33, "Arenas López: B = 10, and a reduction block per stage"),
    "vgg": (3, 18, "Arenas López: VGG38"),
    "block_stack": (1, 10, "Gitari simulation 4: num_blocks: 10, constant width"),
    "baseline_cnn": (4, 0, "Gitari simulation 5: four conv stages, no blocks"),
    "transfer": (4, 8, "its backbone, ResNet-18"),
    "transfer_cifar": (3, 9, "its backbone, CIFAR ResNet-20"),
}


def test_every_config_declares_a_structure():
    assert set(STRUCTURES) == {p.stem for p in CONF.glob("*.yaml")}, "add it to STRUCTURES"


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_config_declares_its_published_stages_and_blocks_and_every_parameter_once(name):
    stages, blocks, source = STRUCTURES[name]
    with torch.device("meta"):
        model = build(name)
    declared = model.structure()
    assert (len(declared.stages), len(declared.blocks)) == (stages, blocks), source
    names = [block.name for block in declared.blocks]
    modules = dict(model.named_modules())
    assert len(set(names)) == len(names) and all(n in modules for n in names)
    in_units = [id(p) for unit in declared.units() for top in unit
                for p in model.get_submodule(top).parameters()]
    assert sorted(in_units) == sorted(id(p) for p in model.parameters()), "each parameter once"
    # blocks in forward order, the order in which their stages hold them
    assert [declared.unit_of(n) for n in names] == sorted(declared.unit_of(n) for n in names)


def test_cifar_resnet_uses_torchvision_names_and_kaiming_init():
    model = CifarResNet(56)
    assert [n for n, _ in model.named_children()] == [
        "conv1", "bn1", "relu", "layer1", "layer2", "layer3", "avgpool", "fc"]
    assert [len(layer) for layer in (model.layer1, model.layer2, model.layer3)] == [9, 9, 9]
    w = model.layer3[4].conv1.weight  # fan_out = 64 * 3 * 3
    assert abs(w.std().item() / (2 / (64 * 9)) ** 0.5 - 1) < 0.05


def test_shortcut_b_projects_only_where_the_shape_changes():
    a, b = CifarResNet(20, shortcut="A"), CifarResNet(20, shortcut="B")
    projections = [n for n, m in b.named_modules() if n.endswith("downsample") and m is not None]
    assert projections == ["layer2.0.downsample", "layer3.0.downsample"]
    assert n_params(b) - n_params(a) == 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    assert not any("downsample" in n for n, _ in a.named_parameters())


# --- residual=False removes every skip ------------------------------------------------------

ABLATIONS = {
    "cifar_A": lambda residual: CifarResNet(20, residual=residual),
    "cifar_B": lambda residual: CifarResNet(20, shortcut="B", residual=residual),
    "seed002": lambda residual: CifarResNet(29, block="bottleneck", shortcut="B", stem_width=64,
                                            conv_bias=True, residual=residual),
    "imagenet18": lambda residual: resnet(18, num_classes=10, residual=residual),
    "imagenet50": lambda residual: resnet(50, num_classes=10, residual=residual),
    "vgg": lambda residual: VGG(14, residual=residual),
    "vgg_bn": lambda residual: VGG(14, batch_norm=True, residual=residual),
    "block_stack": lambda residual: BlockStack(3, residual=residual),
}


def block_outputs_with_zeroed_convs(model: nn.Module, size: int) -> list[tuple[torch.Tensor,
                                                                            torch.Tensor]]:
    """Each declared block's output on its real input once every conv of its residual branch is
    zero, and what the model declares it outputs without that branch (`Block.lesioned`).

    In eval mode with fresh BN statistics a zeroed branch outputs exactly 0, so a block returns
    act(shortcut(x)): all zeros when, and only when, nothing of x bypasses the convs.
    """
    model.eval()
    declared = model.structure().blocks
    blocks = [model.get_submodule(block.name) for block in declared]
    inputs = {}
    hooks = [b.register_forward_pre_hook(lambda m, args: inputs.__setitem__(m, args[0]))
             for b in blocks]
    with torch.no_grad():
        model(torch.randn(2, 3, size, size))
        for h in hooks:
            h.remove()
        for block in blocks:
            for name, m in block.named_modules():
                if isinstance(m, nn.Conv2d) and "downsample" not in name:
                    m.weight.zero_()
                    if m.bias is not None:
                        m.bias.zero_()
        return [(block(inputs[block]), b.lesioned(inputs[block]))
                for block, b in zip(blocks, declared, strict=True)]


@pytest.mark.parametrize("family", sorted(ABLATIONS))
def test_residual_false_removes_every_skip_connection(family):
    size = 32 if family.startswith("imagenet") else 8
    plain = block_outputs_with_zeroed_convs(ABLATIONS[family](False), size)
    residual = block_outputs_with_zeroed_convs(ABLATIONS[family](True), size)
    assert len(plain) == len(residual) > 0
    assert all(out.abs().max() == 0 for out, _ in plain), "a plain block still passes its input"
    assert all(out.abs().max() > 0 for out, _ in residual), "a residual block lost its shortcut"
    # the lesion's "block without its branch" is the block with a zero branch, shortcut and all
    for out, lesioned in residual:
        torch.testing.assert_close(lesioned, out)


def test_plain_imagenet_nets_have_no_shortcut_parameters():
    plain = resnet(34, residual=False)
    assert not any("downsample" in n for n, _ in plain.named_parameters())
    assert all(isinstance(b.downsample, NoShortcut) for b in plain.layer2)
    residual_keys = set(resnet(34).state_dict())
    assert set(plain.state_dict()) == {k for k in residual_keys if "downsample" not in k}


# --- bad arguments -----------------------------------------------------------------------------

@pytest.mark.parametrize("make, words", [
    (lambda: CifarResNet(21), "6n+2"),
    (lambda: CifarResNet(32, block="bottleneck"), "9n+2"),
    (lambda: CifarResNet(20, shortcut="C"), "choose A"),
    (lambda: resnet(20), "18, 34, 50, 101, 152"),
    (lambda: VGG(10), "8, 38, 68"),
])
def test_bad_architecture_arguments_are_user_errors(make, words):
    with pytest.raises(UserError, match=re.escape(words)):
        make()


# --- weights: torchvision names ----------------------------------------------------------------

@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torchvision cache; downloads fail as they do offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, *args, **kwargs):
        raise OSError(f"<urlopen error [Errno -3] Temporary failure in name resolution> ({url})")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "torch" / "hub" / "checkpoints"


def cache_resnet18(cache: Path) -> dict[str, torch.Tensor]:
    """A stand-in for torchvision's resnet18 file, where its own API looks for it."""
    torch.manual_seed(1)
    state = torchvision.models.resnet18().state_dict()
    cache.mkdir(parents=True)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    torch.save(state, cache / url.rsplit("/", 1)[1])
    return state


def test_torchvision_weights_load_from_torchvisions_cache(torch_home):
    state = cache_resnet18(torch_home)
    for name in ("DEFAULT", "ResNet18_Weights.IMAGENET1K_V1"):
        model = resnet(18, weights=name)
        for key, value in model.state_dict().items():
            torch.testing.assert_close(value, state[key])


def test_torchvision_weights_under_a_new_head_and_stem(torch_home):
    state = cache_resnet18(torch_home)
    with pytest.warns(UserWarning, match=r"conv1, fc left freshly initialised"):
        model = build("resnet18", num_classes=2, in_channels=1, weights="IMAGENET1K_V1")
    assert model.fc.out_features == 2 and model.conv1.in_channels == 1
    torch.testing.assert_close(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    torch.testing.assert_close(model.bn1.running_var, state["bn1.running_var"])


def test_missing_torchvision_weights_name_the_cache_folder(torch_home):
    with pytest.raises(UserError) as error:
        resnet(50, weights="IMAGENET1K_V2")
    message = str(error.value)
    assert str(torch_home) in message
    assert "resnet50-11ad3fa6.pth" in message and "could not be downloaded" in message


def test_unknown_or_foreign_torchvision_names_are_user_errors(torch_home):
    with pytest.raises(UserError, match="IMAGENET1K_V1, DEFAULT"):
        resnet(18, weights="IMAGENET1K_V9")
    with pytest.raises(UserError, match="another architecture"):
        resnet(18, weights="ResNet50_Weights.IMAGENET1K_V2")
    with pytest.raises(UserError, match="no torchvision weights"):
        resnet(18, residual=False, weights="IMAGENET1K_V1")
    with pytest.raises(UserError, match="no torchvision weights"):
        CifarResNet(20, weights="IMAGENET1K_V1")


# --- weights: framework checkpoints --------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, nn.Module]:
    """A real checkpoint of this framework: Lightning saving training.module.Classifier, which
    holds the network as `self.model`, after one training step of a CIFAR ResNet-20."""
    torch.manual_seed(0)
    net = CifarResNet(20)
    module = Classifier(net, 10, functools.partial(torch.optim.SGD, lr=0.1))
    data = DataLoader(TensorDataset(torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))),
                      batch_size=4)
    folder = tmp_path_factory.mktemp("run")
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", default_root_dir=folder, limit_val_batches=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's notes on the missing validation loader
        trainer.fit(module, data)
    trainer.save_checkpoint(folder / "last.ckpt")
    return folder / "last.ckpt", net


def test_framework_checkpoint_loads_through_the_config(checkpoint):
    path, source = checkpoint
    model = build("resnet20", weights=str(path))
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)


def test_framework_checkpoint_under_a_new_head(checkpoint):
    with pytest.warns(UserWarning, match="fc left freshly initialised"):
        CifarResNet(20, num_classes=100, weights=str(checkpoint[0]))


def test_broken_checkpoints_are_user_errors(checkpoint, tmp_path):
    with pytest.raises(UserError, match="no such file"):
        CifarResNet(20, weights=str(tmp_path / "missing.ckpt"))
    good = checkpoint[0].read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(good[: len(good) // 2])
    with pytest.raises(UserError, match="truncated"):
        CifarResNet(20, weights=str(tmp_path / "cut.ckpt"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the wrong architecture must not load half-way
        with pytest.raises(UserError, match="another architecture, depth or option"):
            CifarResNet(32, weights=str(checkpoint[0]))
        with pytest.raises(UserError, match="another architecture"):
            VGG(8, num_classes=10, weights=str(checkpoint[0]))
        with pytest.raises(UserError, match="another architecture"):
            CifarResNet(20, shortcut="B", weights=str(checkpoint[0]))


@pytest.mark.parametrize("build", [
    lambda: CifarResNet(depth=20, num_classes=10, zero_init_residual=True),
    lambda: CifarResNet(depth=20, num_classes=10, shortcut="B",
                                      zero_init_residual=True),
    lambda: CifarResNet(depth=11, block="bottleneck", num_classes=10,
                                      zero_init_residual=True),
    lambda: resnet(depth=18, num_classes=10, cifar_stem=True,
                                 zero_init_residual=True),
    lambda: resnet(depth=50, num_classes=10, zero_init_residual=True),
], ids=["cifar-A", "cifar-B", "cifar-bottleneck", "resnet18", "resnet50"])
def test_zero_init_residual_makes_every_block_its_shortcut_at_step_0(build):
    net = build().eval()  # eval: BN with its initial running statistics, as a first step sees
    blocks = [m for m in net.modules() if isinstance(m, (tv.BasicBlock, tv.Bottleneck))]
    seen = []

    def check(block, inputs, output):
        (x,) = inputs
        shortcut = block.downsample(x) if block.downsample is not None else x
        seen.append(torch.equal(output, torch.relu(shortcut)))

    for block in blocks:
        block.register_forward_hook(check)
    with torch.no_grad():
        net(torch.randn(2, 3, 32, 32))
    assert len(seen) == len(blocks) > 0 and all(seen)


def test_zero_init_residual_is_refused_without_shortcuts():
    with pytest.raises(UserError, match="residual=false"):
        CifarResNet(depth=20, residual=False, zero_init_residual=True)
