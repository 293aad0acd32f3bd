"""`model.weights`: a torchvision weights name or a checkpoint this framework wrote.

Every model builder ends with `load_weights(model, weights, ...)`. The stem conv and the classifier
are the two layers whose shapes follow `in_channels` and `num_classes`; when those differ from the
weights' they stay freshly initialised (with a warning), which is how the transfer-learning study
puts an ImageNet backbone under a 2- or 10-class head. Any other difference is a wrong checkpoint.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import WeightsEnum, get_weight

from resnet_exp.core.errors import UserError

CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")


def load_weights(
    model: nn.Module, weights: str | None, torchvision_weights: type[WeightsEnum] | None = None
) -> None:
    """Load `weights` into `model` in place; None or "" leaves the fresh initialisation.

    `torchvision_weights` is the model's enum (e.g. `ResNet18_Weights`), or None for models that
    torchvision does not publish; then only checkpoint paths are accepted.
    """
    if not weights:
        return
    weights = str(weights)
    looks_like_path = (
        os.path.exists(weights) or os.sep in weights or "/" in weights
        or weights.endswith(CHECKPOINT_SUFFIXES)
    )
    if looks_like_path:
        state_dict = _checkpoint_state_dict(weights)
    elif torchvision_weights is None:
        raise UserError(
            f"model.weights={weights!r}: this model has no torchvision weights and there is no "
            "such file. Give the path of a checkpoint this framework wrote "
            "(outputs/runs/<run>/checkpoints/*.ckpt), or null to train from scratch."
        )
    else:
        state_dict = _torchvision_state_dict(_weights_member(weights, torchvision_weights))
    _load_matching(model, state_dict, weights)


def _weights_member(name: str, enum: type[WeightsEnum]) -> WeightsEnum:
    """`IMAGENET1K_V1`, `DEFAULT` or the full `ResNet18_Weights.IMAGENET1K_V1` -> its member."""
    choices = ", ".join(enum.__members__)  # DEFAULT is an alias member
    try:
        member = get_weight(name) if "." in name else enum[name]
    except (KeyError, ValueError) as e:
        raise UserError(
            f"model.weights={name!r} is not a torchvision weights name for this model; "
            f"choose one of {choices} ({enum.__name__}), or give a checkpoint path."
        ) from e
    if not isinstance(member, enum):
        raise UserError(
            f"model.weights={name!r} belongs to another architecture; this model takes "
            f"{enum.__name__}: {choices}."
        )
    return member


def _torchvision_state_dict(member: WeightsEnum) -> dict[str, torch.Tensor]:
    """Through torchvision's own API, so its cache (TORCH_HOME/hub/checkpoints) is shared."""
    filename = os.path.basename(urlparse(member.url).path)
    cache = os.path.join(torch.hub.get_dir(), "checkpoints")
    cached = os.path.join(cache, filename)
    try:
        return member.get_state_dict(progress=True)
    except Exception as e:  # URLError offline, or whatever torch.load raises on a damaged file
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        if not os.path.exists(cached):
            raise UserError(
                f"torchvision weights {member} are not in torchvision's cache folder {cache} and "
                f"could not be downloaded ({reason}). Run once with internet access, or copy "
                f"{filename} (from {member.url}) into {cache} (set TORCH_HOME to move it)."
            ) from e
        raise UserError(
            f"torchvision weights {member}: the cached file {cached} could not be read ({reason}). "
            f"Delete it and run again online, or replace it with a good copy of {member.url}."
        ) from e


def _checkpoint_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The network's weights from a Lightning checkpoint (keys `model.*`) or a bare state dict."""
    if not os.path.isfile(path):
        raise UserError(
            f"model.weights={path!r}: no such file. Give the path of a checkpoint this framework "
            "wrote (outputs/runs/<run>/checkpoints/*.ckpt) or a torchvision weights name such as "
            "IMAGENET1K_V1 (ImageNet ResNets only)."
        )
    from resnet_exp.training import checkpoints  # Lightning's I/O: only where a checkpoint is read

    try:
        checkpoint = checkpoints.read(path)
    except UserError as e:
        raise UserError(f"model.weights={path!r}: {e}") from None
    if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        # The LightningModule holds the network as `self.model`; its loss and metrics are not ours.
        state = checkpoint["state_dict"]
        state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    else:
        state = checkpoint
    if (not isinstance(state, Mapping) or not state
            or not all(isinstance(v, torch.Tensor) for v in state.values())):
        raise UserError(
            f"model.weights={path!r} holds no network weights (expected a Lightning checkpoint "
            "whose state_dict has `model.*` keys, or a state dict). Point to a checkpoint this "
            "framework wrote."
        )
    return dict(state)


def _load_matching(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    from resnet_exp.training.checkpoints import diff

    own = model.state_dict()
    missing, unexpected, mismatched = diff(own, state)
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    replaceable = {convs[0] if convs else None, linears[-1] if linears else None}
    fresh = [k for k in mismatched if k.rpartition(".")[0] in replaceable]
    wrong_shape = [k for k in mismatched if k not in fresh]
    # BN's num_batches_tracked is absent from torchvision's older files; BN fills it in itself.
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if wrong_shape or missing or unexpected:
        details = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
            for label, keys in (("missing", missing), ("unexpected", unexpected),
                                ("other shape", wrong_shape)) if keys
        )
        raise UserError(
            f"model.weights={source!r} do not fit this model ({details}): they were saved from "
            "another architecture, depth or option (shortcut, residual, batch_norm). Use weights "
            "of the same model config."
        )
    model.load_state_dict({k: v for k, v in state.items() if k not in fresh}, strict=False)
    if fresh:
        layers = sorted({k.rpartition(".")[0] for k in fresh})
        warnings.warn(
            f"model.weights={source!r}: {', '.join(layers)} left freshly initialised because "
            "this model's num_classes/in_channels differ from the weights'; every other layer "
            "was loaded.",
            stacklevel=3,
        )
