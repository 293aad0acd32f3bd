"""Which code a saved config may name: `_target_` entries are imported and called by Hydra, so a
run folder written by someone else could otherwise run anything when it is resumed, reproduced
or evaluated. A list of what is allowed, exact names only: a prefix list ("anything in torch")
cannot be complete, since torch, torchvision and Lightning hold functions that write files, load
pickles or run shell commands.

Allowed without `--trust`:
- every `_target_` the shipped conf/ tree names (read from the files, so a new option is allowed
  the day it is added);
- this package's classes, and the builders in resnet_exp.models and resnet_exp.schedules (its
  other functions write files: not targets);
- `SWAPPABLE`: the classes of torch, Lightning and the Hydra plugins a user may put in a config
  in place of the shipped ones (optimizers, schedulers, loggers, callbacks, losses, profilers,
  launchers, samplers).
Anything else, and any interpolation in a `_target_` (it cannot be checked before it resolves),
needs `--trust`. The `hydra` node is checked too, and so are Python's logging factories in it.

>>> from omegaconf import OmegaConf
>>> untrusted(OmegaConf.create({"model": {"_target_": "torch.optim.SGD"}}))
[]
>>> untrusted(OmegaConf.create({"callbacks": {"x": {"_target_": "torch.save"}}}))
[('callbacks.x._target_', 'torch.save')]
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re

from omegaconf import DictConfig, ListConfig, OmegaConf

from resnet_exp.config import CONF_DIR
from resnet_exp.errors import UserError

_OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam",
               "RAdam")
_SCHEDULERS = ("StepLR", "MultiStepLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts",
               "OneCycleLR", "LinearLR", "ExponentialLR", "ConstantLR", "PolynomialLR",
               "ReduceLROnPlateau", "CyclicLR", "SequentialLR", "ChainedScheduler")
_CALLBACKS = ("EarlyStopping", "LearningRateMonitor", "RichProgressBar", "TQDMProgressBar",
              "RichModelSummary", "ModelSummary", "StochasticWeightAveraging", "Timer",
              "DeviceStatsMonitor", "GradientAccumulationScheduler")
SWAPPABLE = frozenset(
    [f"torch.optim.{name}" for name in _OPTIMIZERS]
    + [f"torch.optim.lr_scheduler.{name}" for name in _SCHEDULERS]
    + [f"torch.nn.{name}" for name in ("CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss")]
    + [f"pytorch_lightning.callbacks.{name}" for name in _CALLBACKS]
    + [f"pytorch_lightning.loggers.{name}"
       for name in ("TensorBoardLogger", "CSVLogger", "MLFlowLogger", "WandbLogger")]
    + [f"pytorch_lightning.profilers.{name}"
       for name in ("SimpleProfiler", "AdvancedProfiler", "PyTorchProfiler")]
    + [f"pytorch_lightning.strategies.{name}" for name in ("DDPStrategy", "SingleDeviceStrategy")]
    + ["pytorch_lightning.Trainer"]
    + [f"torchmetrics.classification.{name}"
       for name in ("MulticlassAccuracy", "MulticlassF1Score", "MulticlassPrecision",
                    "MulticlassRecall", "MulticlassConfusionMatrix")]
    # Hydra's own launchers and sweepers, and the plugins pyproject.toml installs
    + ["hydra._internal.core_plugins.basic_launcher.BasicLauncher",
       "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
       "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
       "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
       "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
       # the Optuna sweeper that run folders written before this project's own one name
       "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"]
    + [f"optuna.samplers.{name}"
       for name in ("TPESampler", "RandomSampler", "CmaEsSampler", "NSGAIISampler",
                    "GridSampler", "QMCSampler")]
    + [f"optuna.pruners.{name}"
       for name in ("MedianPruner", "HyperbandPruner", "SuccessiveHalvingPruner", "NopPruner",
                    "PercentilePruner", "ThresholdPruner")]
)
# Packages whose functions (not only classes) are meant to be config targets.
_BUILDERS = ("resnet_exp.models.", "resnet_exp.schedules.")
_TARGET_LINE = re.compile(r"^\s*-?\s*_target_:\s*([\w.]+)\s*$", re.M)


@functools.cache
def shipped() -> frozenset[str]:
    """Every `_target_` written in the conf/ tree."""
    return frozenset(target for path in CONF_DIR.rglob("*.yaml")
                     for target in _TARGET_LINE.findall(path.read_text()))


@functools.cache
def _ours(target: str) -> bool:
    """A class of this package, or a builder of its models or schedules."""
    module_name, _, name = target.rpartition(".")
    if not module_name.startswith("resnet_exp"):
        return False
    if target.startswith(_BUILDERS):
        return True
    try:
        obj = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return False
    return inspect.isclass(obj)


def allowed(target: object) -> bool:
    if not isinstance(target, str) or "${" in target:  # an interpolation cannot be checked
        return False
    return target in shipped() or target in SWAPPABLE or _ours(target)


def _logging_factory(path: str, key: object, value: object) -> bool:
    """Python's logging.config builds `()` factories and handler `class`es: code too."""
    if key == "()":
        return True
    return key == "class" and "_logging." in path and not str(value).startswith("logging.")


def untrusted(cfg: DictConfig | ListConfig, prefix: str = "") -> list[tuple[str, object]]:
    """(key, target) of every `_target_` outside the allow-list, interpolations unresolved."""
    return _walk(OmegaConf.to_container(cfg, resolve=False), prefix)


def _walk(node, prefix: str) -> list[tuple[str, object]]:
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        path = f"{prefix}{key}"
        if isinstance(value, (dict, list)):
            found += _walk(value, path + ".")
        elif (key == "_target_" and not allowed(value)) or _logging_factory(path, key, value):
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
            f"refusing the config of {source}: {key}={target} would run code that is not on "
            f"the allow-list (runs/trust.py){more}. Read the config; if you trust it, pass --trust"
        )
