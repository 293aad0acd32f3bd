"""Which code a saved config may import: `_target_` entries are imported and called by Hydra, so
a run folder written by someone else could otherwise run anything when it is resumed, reproduced
or evaluated.

>>> from omegaconf import OmegaConf
>>> untrusted(OmegaConf.create({"model": {"_target_": "torch.nn.Linear"}}))
[]
>>> untrusted(OmegaConf.create({"callbacks": {"x": {"_target_": "os.system"}}}))
[('callbacks.x._target_', 'os.system')]
"""

from __future__ import annotations

from omegaconf import DictConfig, ListConfig, OmegaConf

from resnet_exp.errors import UserError

ALLOWED_PACKAGES = ("resnet_exp", "torch", "torchvision", "pytorch_lightning", "torchmetrics")
# Inside the allowed packages, the entry points that load or compile and then run code.
REFUSED_PREFIXES = (
    "torch.hub", "torch.load", "torch.jit.load", "torch.package", "torch.utils.cpp_extension",
    "torch.ops.load_library", "torch.classes.load_library", "torch.serialization",
    "torch.export.load",
)


def allowed(target: object) -> bool:
    if not isinstance(target, str) or "${" in target:  # an interpolation cannot be checked
        return False
    if any(target == p or target.startswith(p + ".") for p in REFUSED_PREFIXES):
        return False
    return target.split(".")[0] in ALLOWED_PACKAGES


def untrusted(cfg: DictConfig | ListConfig, prefix: str = "") -> list[tuple[str, object]]:
    """(key, target) of every `_target_` outside the allow-list, interpolations unresolved."""
    found = []
    items = cfg.items_ex(resolve=False) if isinstance(cfg, DictConfig) else enumerate(cfg)
    for key, value in items:
        path = f"{prefix}{key}"
        if isinstance(value, (DictConfig, ListConfig)):
            found += untrusted(value, path + ".")
        elif key == "_target_" and not allowed(value):
            found.append((path, value))
    return found


def check(cfg: DictConfig, source: str, trust: bool = False) -> None:
    """Refuse `cfg` (read from `source`) when it names code outside the allow-list."""
    if trust:
        return
    cfg = cfg if isinstance(cfg, (DictConfig, ListConfig)) else OmegaConf.create(cfg)
    refused = untrusted(cfg)
    if refused:
        key, target = refused[0]
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise UserError(
            f"refusing the config of {source}: {key}={target} would import code outside "
            f"{', '.join(ALLOWED_PACKAGES)}{more}. Read the config; if you trust it, pass --trust"
        )
