"""The config tree as the matrix reads it: each group's options and the keys each option sets,
read from conf/ (and Hydra's launcher plugins) when the matrix is made, so that an option added
to a group enters the matrix by itself. No torch here: pytest reads this at collection."""

from __future__ import annotations

from collections import defaultdict
from functools import cache

from omegaconf import OmegaConf

from resnet_exp.core.config import CONF_DIR


def options(group: str) -> list[str]:
    """A group's options, as `python -m resnet_exp --help` lists them (resnet_exp/core/usage.py)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@cache
def launchers() -> list[str]:
    """Hydra's launcher group, its plugins' options included (basic, joblib, submitit_*)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return GlobalHydra.instance().config_loader().get_group_options("hydra/launcher")


def node(group: str, option: str) -> dict:
    """An option's keys with those of the files its defaults list pulls in (its base, a sibling
    option), unresolved: what the matrix's rules read. The cells themselves compose with Hydra;
    composing ~60 options here would cost ~10 s at every collection."""
    return _merged(f"{group}/{option}")


@cache
def _merged(path: str) -> dict:
    raw = OmegaConf.load(CONF_DIR / f"{path}.yaml")
    folder = path.rpartition("/")[0]
    merged = OmegaConf.create()
    for entry in raw.get("defaults", []):
        if isinstance(entry, str) and entry != "_self_":  # not `override /group: option`
            name = entry.split("@")[0]
            inner = name[1:] if name.startswith("/") else f"{folder}/{name}".lstrip("/")
            merged = OmegaConf.merge(merged, _merged(inner))
    body = OmegaConf.to_container(raw)
    body.pop("defaults", None)
    return OmegaConf.to_container(OmegaConf.merge(merged, body))


def family(model: str) -> str:
    """A model option's family: the builder it names (`CifarResNet`, `resnet`, `transfer`)."""
    return node("model", model)["_target_"].rsplit(".", 1)[-1]


@cache
def families() -> dict[str, list[str]]:
    members = defaultdict(list)
    for model in options("model"):
        members[family(model)].append(model)
    return dict(members)


def loggers() -> list[str]:
    """Each logger alone, and all of them at once (`logger=[tensorboard,mlflow]` and the like:
    each must still write its own files beside the others)."""
    alone = options("logger")
    return [*alone, f"[{','.join(alone)}]"]


def reads_files(data: str) -> bool:
    """Whether a data option reads image files (resnet_exp/data/folders.py), the only ones that
    take a random-resized crop of the full image."""
    return node("data", data)["_target_"].startswith("resnet_exp.data.folders.")


def analyses(option: str) -> set[str]:
    """The analyses an analysis option runs: its nodes that name a class."""
    return {k for k, v in node("analysis", option).items() if isinstance(v, dict)}


def crops(augmentation: str) -> bool:
    """Whether an augmentation takes a random-resized crop of each image as it is read."""
    return bool(node("augmentation", augmentation).get("random_resized_crop"))
