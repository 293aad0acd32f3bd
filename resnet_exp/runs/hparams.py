"""What TensorBoard's HPARAMS tab compares, a row per run: the run's settings and its results.

TensorBoard shows the first few columns of each kind and hides the rest until ticked, so the
order matters: settings that differ come first (TensorBoard sorts them by (not differs, name)),
and a run marks as differing what its command line set and its seed: what a sweep swept. The
result columns are the logged scalars themselves (TensorBoard reads each one's last value), key
results first; a copy of them under another name would add a tag group to the Time Series page
and points at step 0 of the test curves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from resnet_exp.config import GROUPS, override_key
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


def first_settings(overrides: Sequence[str]) -> list[str]:
    """The columns to show first: what the command line set, and the seed."""
    keys = [override_key(o) for o in overrides]
    return [column(k) for k in keys if not k.startswith(NOT_COLUMNS)] + ["seed"]


def result_tags(metrics: dict, monitor: str) -> list[str]:
    """The result columns, each a scalar the run logged (metrics.json's final/val/acc is the
    last point of val/acc): the best monitored value and the two final tests first."""
    logged = [k.removeprefix("final/") for k, v in metrics.items() if isinstance(v, (int, float))
              and k.startswith(("final/", "test/", "test_last/", "time/", f"{monitor}_best"))]
    first = [f"{monitor}_best", "test/acc", "test_last/acc"]
    return list(dict.fromkeys([*[t for t in first if t in logged], *logged]))


@rank_zero_only  # as the logger's own log_hyperparams: other ranks' experiment is a dummy
def write(logger, params: dict, first: Iterable[str], results: Sequence[str]) -> None:
    """The HPARAMS session of a TensorBoardLogger's run: its settings (`first` marked as
    differing) and its result columns, which must be scalars logged in that run."""
    from tensorboard.plugins.hparams import plugin_data_pb2
    from torch.utils.tensorboard.summary import hparams

    logger.log_hyperparams(params)  # hparams.yaml (no metrics: Lightning writes no summary)
    experiment, start, end = hparams(params, dict.fromkeys(results, 0.0))
    value = experiment.value[0]
    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    marked = set(first)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in marked
    value.metadata.plugin_data.content = data.SerializeToString()
    writer = logger.experiment._get_file_writer()
    for summary in (experiment, start, end):
        writer.add_summary(summary)
