"""Transfer learning (Gitari's course report "ResNet and Big Data Computer Vision Simulations",
simulation 5; docs/studies.md#sources): a pretrained ResNet backbone under a new head.

Three modes, compared in `conf/experiment/transfer_learning*.yaml`:

- `scratch`: the same network, randomly initialised, everything trained (the baseline).
- `feature_extract`: the pretrained backbone is frozen, its batch norm included: frozen BN layers
  stay in eval mode and normalise with the pretrained running statistics even while the rest of
  the model trains (as Keras does for `trainable = False` layers). Only the new head learns.
- `finetune`: the new head plus the last `trainable_stages` stages of the backbone are trained,
  the backbone at `backbone_lr_scale` times the head's rate (declared as `model.lr_scales`, which
  the optimizer's parameter groups read: training/param_groups.py); earlier stages stay frozen
  as above.

The network keeps its own class and state-dict keys (nothing is wrapped), so a fine-tuned
checkpoint loads back into the plain model config, and its structure is the backbone's. The units
trained or frozen are those the backbone declares (`structure()`, models/structure.py): its stem,
then each stage (`layer1`, `layer2`, ... of the ResNets); the head it declares is the new one.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from resnet_exp.core.errors import UserError
from resnet_exp.models.structure import structure_of

MODES = ("scratch", "feature_extract", "finetune")


def _keep_eval(module: nn.Module, args: tuple) -> None:
    # A forward pre-hook: runs after any model.train() call, so a frozen BN layer never uses batch
    # statistics nor updates its running ones, whoever switched the model to training.
    module.train(False)


def parts(model: nn.Module) -> tuple[list[tuple[str, ...]], tuple[str, ...]]:
    """([stem, stage 1, stage 2, ...], head): the backbone's declared units, input side first,
    by module name."""
    declared = structure_of(model)
    if not declared.stages or not declared.head:
        raise UserError(
            f"model.backbone builds a {type(model).__name__}, which declares no stages and head "
            "(`structure()`), and transfer learning trains or freezes those: use a network of "
            "resnet_exp.models, e.g. resnet_exp.models.resnet.resnet (torchvision's ImageNet "
            "ResNets, their weights included) or .CifarResNet."
        )
    return [unit for unit in (declared.stem, *declared.stages) if unit], declared.head


def transfer(
    backbone: Callable[..., nn.Module],
    mode: str = "finetune",
    weights: str | None = None,
    trainable_stages: int = 1,
    backbone_lr_scale: float = 0.1,
) -> nn.Module:
    """Build `backbone(weights=...)`, give it a new head and freeze what `mode` says.

    backbone: a model builder (`_partial_` config) taking `weights`. weights: a torchvision weights
    name (IMAGENET1K_V1) or a checkpoint this framework wrote; ignored by `scratch`.
    trainable_stages: how many of the last stages `finetune` trains (the stem counts as one).
    backbone_lr_scale: the fine-tuned stages' learning rate relative to the head's; 0.1 moves the
    pretrained features ten times slower than the fresh classifier, so a head that starts random
    does not wreck them in the first steps.
    """
    if mode not in MODES:
        raise UserError(f"model.mode={mode!r}: choose one of {', '.join(MODES)}.")
    if mode != "scratch" and not weights:
        raise UserError(
            f"model.mode={mode} needs pretrained weights: set model.weights to a torchvision name "
            "(IMAGENET1K_V1) or a checkpoint path (outputs/runs/<run>/checkpoints/best.ckpt), or "
            "use model.mode=scratch."
        )
    model = backbone(weights=None if mode == "scratch" else weights)
    units, head = parts(model)
    if mode == "scratch":
        return model
    if mode == "finetune" and not 1 <= trainable_stages <= len(units):
        raise UserError(
            f"model.trainable_stages={trainable_stages}: this backbone has {len(units)} stages "
            f"(its stem counts as one); fine-tune 1 to {len(units)} of them, or use "
            "model.mode=feature_extract to train the head alone."
        )
    # A new head even when the pretrained one has the right shape: the target's classes are new.
    for name in head:
        # the layers with weights: fc (, fc1)
        reset = getattr(model.get_submodule(name), "reset_parameters", None)
        if reset is not None:
            reset()
    trained = units[len(units) - trainable_stages :] if mode == "finetune" else []
    _freeze_all_but(model, [name for unit in trained for name in unit], head)
    model.lr_scales = {name: backbone_lr_scale for unit in trained for name in unit}
    return model


def _freeze_all_but(model: nn.Module, trained: list[str], head: tuple[str, ...]) -> None:
    """Freeze every parameter and batch norm outside the modules named `trained` and `head`."""
    tops = [model.get_submodule(name) for name in trained]
    kept = {id(p) for m in [*tops, *map(model.get_submodule, head)] for p in m.parameters()}
    for p in model.parameters():
        if id(p) not in kept:
            p.requires_grad_(False)
    trained_modules = {id(m) for top in tops for m in top.modules()}
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in trained_modules:
            m.register_forward_pre_hook(_keep_eval)
