"""A run's settings as flat columns, a row per run: what every logger records to compare runs by
(TensorBoard's HPARAMS tab, MLflow's parameters, a CSV logger's hparams.yaml).

The columns are the group choices, the scalar settings of the groups a study varies, and whatever
the command line set. Which of them differ is for the reader to find across the runs it shows
(TensorBoard marks them itself: resnet_exp/loggers/tensorboard.py): a run cannot know.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from resnet_exp.core.config import GROUPS, override_key
from resnet_exp.runs import NOT_TRAINING

# the groups whose scalar settings are columns, beside the choices, seed and max_epochs
SETTING_GROUPS = ("model", "data", "augmentation", "optimizer", "module")
# overrides that set nothing the run trains with
NOT_COLUMNS = ("hydra", *NOT_TRAINING)


def settings(cfg: DictConfig, choices: dict, overrides: Sequence[str] = ()) -> dict:
    """The group choices, the scalar settings of SETTING_GROUPS, and whatever else an override
    set; tags joined by commas."""
    flat = {f"choice/{g}": str(choices[g]) for g in GROUPS
            if choices.get(g) is not None and g not in NOT_COLUMNS}
    flat.update({"seed": cfg.seed, "deterministic": cfg.deterministic})
    if cfg.get("tags"):
        flat["tags"] = ",".join(map(str, cfg.tags))
    for group in SETTING_GROUPS:
        node = OmegaConf.to_container(cfg[group], resolve=True) if cfg.get(group) else {}
        for key, value in (node or {}).items():
            if isinstance(value, (int, float, str, bool)) and not key.startswith("_"):
                flat[f"{group}/{key}"] = value
    flat["trainer/max_epochs"] = cfg.trainer.get("max_epochs")
    for key in map(override_key, overrides):
        name = column(key)
        if name not in flat and not key.startswith(NOT_COLUMNS):
            value = OmegaConf.select(cfg, key, default=None)
            if isinstance(value, (int, float, str, bool)):
                flat[name] = value
    return flat


def column(key: str) -> str:
    """The column of an override's key: `model=resnet32` -> choice/model, `optimizer.lr` ->
    optimizer/lr."""
    return f"choice/{key}" if key in GROUPS else key.replace(".", "/")
