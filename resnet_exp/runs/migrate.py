"""Run folders of older layouts, read as today's: every rule that reads what older code wrote
lives here, under the layout it upgrades from. The layout of today is described once, in
runs/__init__.py; its number, `LAYOUT`, is run.json's `layout`.

A change that would make this code misread a folder written before it (a class that moves, a
logged tag renamed, a file moved) raises `LAYOUT` and adds its rule here, applied to folders of
the layouts before. Each reader asks for the layout once (`check`), then passes it to the rules
of what it reads (`overrides`, `config`, `scalars`), which leave a folder of today as it is.
A folder of a newer layout than this code's is refused, naming the resnet-exp that wrote it.

Layout 1: every run.json without `layout` (the field came with layout 2). Its rules:
- import paths of the flat layout, one module per idea before data/, callbacks/ and runs/
  (`resnet_exp.gradflow.GradientFlow`), and the package re-exports conf/ once named
  (`resnet_exp.data.CIFAR10`), read as today's canonical names (`MOVED`, `canonical`), so such
  runs replay without a drift warning or `--trust`; and, as for layout 2, `WINGS`;
- epochs in metrics.json counted from 0 (`best_epoch`, eval's `checkpoint_epoch`: `EPOCH_KEYS`);
- the train epoch's loss logged as `train/loss_epoch` (today `train/loss`: `RENAMED_TAGS`);
- the analyses as one class with every knob (`analysis.grid=11`), today one node per analysis
  (`analysis.landscape.grid=11`: `RENAMED_KEYS`), and the MLflow logger as a factory function.

Layout 2: run.json's `layout` is 2. Its rule:
- the run's helpers loose beside the wings (`resnet_exp.module.Classifier`,
  `resnet_exp.schedules.warmup`), today in `training/` and `core/` (`WINGS`).

Imports no torch: `__main__` replays `resume=RUN_DIR` before Hydra starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet_exp.core.config import unquote
from resnet_exp.core.errors import UserError
from resnet_exp.runs import LAYOUT, RUN_FILE, read

UNVERSIONED = 1  # the layout of a run.json without "layout": every run before the field

# -- from layout 1: import paths -----------------------------------------------------------------
# The flat layout's import paths -> today's canonical ones.
MOVED = {
    "resnet_exp.augment.Augmentation": "resnet_exp.data.augment.Augmentation",
    "resnet_exp.folders.ImageFolder": "resnet_exp.data.folders.ImageFolder",
    "resnet_exp.folders.ImageNet": "resnet_exp.data.folders.ImageNet",
    "resnet_exp.checkpoints.ModelCheckpoint": "resnet_exp.callbacks.checkpoint.ModelCheckpoint",
    "resnet_exp.gradflow.GradientFlow": "resnet_exp.callbacks.gradflow.GradientFlow",
    "resnet_exp.guards.EpochSeed": "resnet_exp.training.seeding.EpochSeed",
    "resnet_exp.guards.StopOnNonFinite": "resnet_exp.callbacks.guards.StopOnNonFinite",
    "resnet_exp.perclass.PerClassMetrics": "resnet_exp.callbacks.perclass.PerClassMetrics",
    "resnet_exp.samples.AugmentedSamples": "resnet_exp.callbacks.samples.AugmentedSamples",
    "resnet_exp.outputs.CheckOutput": "resnet_exp.runs.hydra_hooks.ClaimOutputFolder",
    "resnet_exp.sweeps.SweepSummary": "resnet_exp.runs.hydra_hooks.SweepSummary",
    "resnet_exp.analyze.Analyses": "resnet_exp.analysis.Analyses",
    "resnet_exp.loggers.mlflow": "resnet_exp.loggers.mlflow.MLflow",
}
# -- from layouts 1 and 2: the loose helpers, today in their wings ----------------------------
# module prefix -> today's (the classes and factories of these modules a config may name)
WINGS = {f"resnet_exp.{name}.": f"resnet_exp.{wing}.{name}." for wing, names in (
    ("training", ("module", "param_groups", "checkpoints", "profiling", "seeding", "schedules",
                  "metrics", "ema", "distributed", "cpu_threads", "speed")),
    ("core", ("config", "console", "errors", "usage", "signatures", "figures")),
) for name in names}

# An analysis knob's key -> today's, under the analysis it belongs to (conf/analysis/).
RENAMED_KEYS = {"analysis.draws": "analysis.lesion.draws",
                # the parameter groups' own node (param_groups.py), no longer the module's flag
                "module.weight_decay_bn_bias": "module.param_groups.weight_decay_bn_bias",
                **{f"analysis.{k}": f"analysis.landscape.{k}" for k in ("points", "grid", "span")},
                **{f"analysis.{k}": f"analysis.sharpness.{k}" for k in ("iterations", "tol")}}

# -- from layout 1: epochs counted from 0 --------------------------------------------------------
# metrics.json's epoch numbers (today counted from 1, as the console and the summary count them)
EPOCH_KEYS = ("best_epoch", "checkpoint_epoch")

# -- from layout 1: logged tags ------------------------------------------------------------------
# Old tag -> today's, in TensorBoard's events and the CSV log (metrics.json kept its names).
RENAMED_TAGS = {"train/loss_epoch": "train/loss"}


def layout(info: dict[str, Any], where: Path | str = RUN_FILE) -> int:
    """The layout of a run whose run.json (`where`) holds `info` ({} where it has none); a
    UserError when its `layout` is not a layout number.

    >>> layout({"status": "finished"}), layout({"layout": 2})
    (1, 2)
    """
    found = info.get("layout", UNVERSIONED)
    if not isinstance(found, int) or isinstance(found, bool) or found < UNVERSIONED:
        raise UserError(f"{where}: layout {found!r} is not a layout number: the file was edited")
    return found


def check(run_dir: Path) -> int:
    """The layout of the run in `run_dir`, or a UserError when it is newer than this code reads.
    A missing or damaged run.json reads as layout 1: the rules leave today's content as it is."""
    path = Path(run_dir) / RUN_FILE
    try:
        info = read.read_json(path)
    except (OSError, ValueError):
        info = {}
    found = layout(info, path)
    if found > LAYOUT:
        raise UserError(
            f"{run_dir} has run-folder layout {found}, newer than this resnet-exp "
            f"({_version()}) reads (up to {LAYOUT}): read it with the resnet-exp that wrote it, "
            f"{_writer(info)}, or a later one")
    return found


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("resnet-exp")
    except metadata.PackageNotFoundError:
        return "not installed"


def _writer(info: dict[str, Any]) -> str:
    version = (info.get("packages") or {}).get("resnet-exp") or "version unknown"
    commit = (info.get("git") or {}).get("commit")
    return f"{version} (commit {commit[:12]})" if commit else str(version)


def canonical(target: str) -> str:
    """Today's canonical name for a target of this package that a run saved under an old path or
    through a package's re-export (`resnet_exp.callbacks.GradientFlow`); others are unchanged.
    Only names of the allowed set are ever given back, so this allows nothing new (trust.py).

    >>> canonical("resnet_exp.data.CIFAR10"), canonical("resnet_exp.gradflow.GradientFlow")
    ('resnet_exp.data.memory.CIFAR10', 'resnet_exp.callbacks.gradflow.GradientFlow')
    >>> canonical("resnet_exp.module.Classifier")
    'resnet_exp.training.module.Classifier'
    """
    # not at import: the report reads runs through this module, and would pay 70 ms for trust.py
    from resnet_exp.runs import trust

    target = MOVED.get(target, target)
    prefix = next((p for p in WINGS if target.startswith(p)), None)
    if prefix is not None:
        target = WINGS[prefix] + target[len(prefix):]
    package, _, name = target.rpartition(".")
    if trust.allowed(target) or not package.startswith("resnet_exp"):
        return target
    found = [t for t in trust.project_targets() if t.startswith(package + ".")
             and t.endswith("." + name)]
    return found[0] if len(found) == 1 else target


def renamed(override: str) -> str:
    """An override of a `_target_` with the value's canonical name (`canonical`); a key that
    moved (`RENAMED_KEYS`) under its new name.

    >>> renamed("+callbacks.g._target_=resnet_exp.gradflow.GradientFlow")
    '+callbacks.g._target_=resnet_exp.callbacks.gradflow.GradientFlow'
    >>> renamed("analysis.grid=11"), renamed("module.weight_decay_bn_bias=false")
    ('analysis.landscape.grid=11', 'module.param_groups.weight_decay_bn_bias=false')
    """
    key, sep, value = override.partition("=")
    bare = key.lstrip("+~")
    if sep and bare in RENAMED_KEYS:
        return f"{key[:len(key) - len(bare)]}{RENAMED_KEYS[bare]}={value}"
    if not sep or not key.endswith("_target_"):
        return override
    new = canonical(unquote(value))
    return override if new == unquote(value) else f"{key}={new}"


def overrides(saved: list[str], layout: int) -> list[str]:
    """A run's saved `.hydra/overrides.yaml` as today's code reads it. From layouts 1 and 2:
    every `_target_` by its canonical name."""
    return [renamed(o) for o in saved] if layout <= 2 else list(saved)


def config(saved: Any, layout: int) -> Any:
    """A run's saved `.hydra/config.yaml`, as plain data, as today's code reads it. From layouts
    1 and 2: every `_target_` by its canonical name."""
    if layout > 2:
        return saved
    if isinstance(saved, dict):
        return {k: canonical(v) if k == "_target_" and isinstance(v, str) else config(v, layout)
                for k, v in saved.items()}
    if isinstance(saved, list):
        return [config(v, layout) for v in saved]
    return saved


def scalars(series: dict[str, Any], layout: int) -> dict[str, Any]:
    """A run's logged scalar series (read.read_scalars) under today's tags. From layout 1:
    `RENAMED_TAGS`, where the run logged no series of the new name too.

    >>> scalars({"train/loss_epoch": [(1, 0.5)]}, 1)
    {'train/loss': [(1, 0.5)]}
    """
    if layout > 1:
        return series
    series = dict(series)
    for old, new in RENAMED_TAGS.items():
        if old in series and new not in series:
            series[new] = series.pop(old)
    return series


def metrics(saved: dict[str, Any], layout: int) -> dict[str, Any]:
    """A run's metrics.json as today's code reads it. From layout 1: `EPOCH_KEYS` counted from 1.

    >>> metrics({"best_epoch": 0, "test/acc": 0.9}, 1), metrics({"best_epoch": 1}, 2)
    ({'best_epoch': 1, 'test/acc': 0.9}, {'best_epoch': 1})
    """
    if layout > 1:
        return saved
    return {k: v + 1 if k in EPOCH_KEYS and isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in saved.items()}


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """The metrics.json of the run in `run_dir` ({} before it finished), as today's code reads it;
    a UserError for a folder of a newer layout (`check`)."""
    return metrics(read.read_metrics(run_dir), check(run_dir))
