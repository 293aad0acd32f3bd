"""Which code and which files a saved config may name. Hydra imports and calls every `_target_`, so
a run folder written by someone else could otherwise run anything when it is resumed, reproduced,
evaluated or analysed. docs/security.md says what this protects against and what it does not.

The check is right by construction, not by a long list of what is forbidden:
- It reads the config **as it will be instantiated**: every interpolation and resolver resolved
  (`${oc.create:...}` builds nodes), every node at any depth, lists and Hydra's own node included.
- A `_target_` passes only when it is one of a finite set of exact strings, each of which names
  one allowed callable: the canonical name (`__module__` + `.` + `__qualname__`) of a class or
  factory of this package's config-facing modules (`TARGET_MODULES`, read from their source, so no
  import runs and nothing is reached through a module's attributes), or an entry of `SWAPPABLE`,
  the torch, Lightning, torchmetrics, Optuna and Hydra classes a config may name (their public
  spelling -> canonical name; a test locates each and compares). No prefix rule: a dotted path
  through an allowed module (`resnet_exp.models.weights.torch.utils...`) is just another string.
- Arguments that name files or folders (`PATH_KEYS`) stay inside the run folder or the roots the
  user's own configuration gives (today's config tree with the run's group choices and the
  command line's overrides: the data root, outputs/, the MLflow store); a remote URI must be the
  one that configuration names.
Anything else needs `--trust`.

>>> allowed("torch.optim.SGD"), allowed("torch.optim.sgd.SGD"), allowed("torch.save")
(True, True, False)
>>> allowed("resnet_exp.models.resnet.CifarResNet"), allowed("resnet_exp.models.weights.torch.save")
(True, False)
"""

from __future__ import annotations

import ast
import functools
import os
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from resnet_exp.core.errors import UserError
from resnet_exp.runs.context import resolving_as_run

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# Modules of this package whose public top-level classes a config may name (the data modules,
# networks, callbacks, the LightningModule, the Hydra callbacks...), and those whose public
# functions are factories too. Other modules hold functions that write files (checkpoints.save,
# runs.atomic.write_json_atomic): never targets.
TARGET_MODULES = ("data.", "models.", "callbacks.", "analysis", "loggers.", "training.module",
                  "training.param_groups", "training.checkpoints", "training.profiling",
                  "training.seeding", "runs.hydra_hooks")
FACTORY_MODULES = ("models.", "callbacks.", "training.schedules")

_OPTIMIZERS = {"SGD": "sgd", "Adam": "adam", "AdamW": "adamw", "RMSprop": "rmsprop",
               "Adagrad": "adagrad", "Adadelta": "adadelta", "Adamax": "adamax", "NAdam": "nadam",
               "RAdam": "radam"}
_SCHEDULERS = ("StepLR", "MultiStepLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts",
               "OneCycleLR", "LinearLR", "ExponentialLR", "ConstantLR", "PolynomialLR",
               "ReduceLROnPlateau", "CyclicLR", "SequentialLR", "ChainedScheduler")
_PL = "pytorch_lightning"
_CALLBACKS = {"EarlyStopping": "early_stopping", "LearningRateMonitor": "lr_monitor",
              "RichProgressBar": "progress.rich_progress",
              "TQDMProgressBar": "progress.tqdm_progress",
              "RichModelSummary": "rich_model_summary", "ModelSummary": "model_summary",
              "StochasticWeightAveraging": "stochastic_weight_avg", "Timer": "timer",
              "DeviceStatsMonitor": "device_stats_monitor",
              "GradientAccumulationScheduler": "gradient_accumulation_scheduler"}
_LOGGERS = {"TensorBoardLogger": "tensorboard", "CSVLogger": "csv_logs", "MLFlowLogger": "mlflow",
            "WandbLogger": "wandb"}
_METRICS = {"MulticlassAccuracy": "accuracy", "MulticlassF1Score": "f_beta",
            "MulticlassPrecision": "precision_recall", "MulticlassRecall": "precision_recall",
            "MulticlassConfusionMatrix": "confusion_matrix"}
_PRUNERS = {"MedianPruner": "_median", "HyperbandPruner": "_hyperband", "NopPruner": "_nop",
            "SuccessiveHalvingPruner": "_successive_halving", "PercentilePruner": "_percentile",
            "ThresholdPruner": "_threshold"}
_SAMPLERS = {"TPESampler": "_tpe.sampler", "RandomSampler": "_random", "CmaEsSampler": "_cmaes",
             "NSGAIISampler": "nsgaii._sampler", "GridSampler": "_grid", "QMCSampler": "_qmc"}
_HYDRA = ("hydra._internal.core_plugins.basic_launcher.BasicLauncher",
          "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
          "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
          "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
          "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
          "hydra_plugins.resnet_exp_sweepers.optuna_sweeper.OptunaSweeper",
          "hydra_plugins.resnet_exp_sweepers.slurm_launcher.SlurmLauncher")
# The third-party classes a user may put in a config in place of the shipped ones: the spelling
# their documentation uses -> the canonical name of the object it locates (tests/test_trust.py
# locates both). Canonical spellings are accepted too.
SWAPPABLE: dict[str, str] = {
    **{f"torch.optim.{n}": f"torch.optim.{m}.{n}" for n, m in _OPTIMIZERS.items()},
    **{f"torch.optim.lr_scheduler.{n}": f"torch.optim.lr_scheduler.{n}" for n in _SCHEDULERS},
    **{f"torch.nn.{n}": f"torch.nn.modules.loss.{n}"
       for n in ("CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss")},
    **{f"{_PL}.callbacks.{n}": f"{_PL}.callbacks.{m}.{n}" for n, m in _CALLBACKS.items()},
    **{f"{_PL}.loggers.{n}": f"{_PL}.loggers.{m}.{n}" for n, m in _LOGGERS.items()},
    **{f"{_PL}.profilers.{n}": f"{_PL}.profilers.{n[:-8].lower()}.{n}"
       for n in ("SimpleProfiler", "AdvancedProfiler", "PyTorchProfiler")},
    f"{_PL}.strategies.DDPStrategy": f"{_PL}.strategies.ddp.DDPStrategy",
    f"{_PL}.strategies.SingleDeviceStrategy":
        f"{_PL}.strategies.single_device.SingleDeviceStrategy",
    f"{_PL}.Trainer": f"{_PL}.trainer.trainer.Trainer",
    **{f"torchmetrics.classification.{n}": f"torchmetrics.classification.{m}.{n}"
       for n, m in _METRICS.items()},
    **{f"optuna.pruners.{n}": f"optuna.pruners.{m}.{n}" for n, m in _PRUNERS.items()},
    **{f"optuna.samplers.{n}": f"optuna.samplers.{m}.{n}" for n, m in _SAMPLERS.items()},
    **{name: name for name in _HYDRA},
}
# Arguments that name a file or folder to write or read; a URI in `tracking_uri`/`storage`.
PATH_KEYS = frozenset({"root", "save_dir", "dirpath", "default_root_dir", "log_dir", "output_dir",
                       "run_dir", "f", "path", "filename", "dir", "file", "ckpt_path",
                       "tracking_uri", "storage", "submitit_folder", "artifact_location"})
_LOCAL_SCHEMES = ("sqlite:///", "journal:///", "file://", "file:")  # an Optuna journal's too


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def project_targets() -> frozenset[str]:
    """Canonical names of the classes (and factories) defined in TARGET_MODULES, read from the
    source: a name imported into a module is not defined there, so it is not listed."""
    found = set()
    for path in PACKAGE_DIR.rglob("*.py"):
        module = _module_name(path)
        inner = module.removeprefix("resnet_exp.")
        kinds = (ast.ClassDef,) if inner.startswith(TARGET_MODULES) else ()
        if inner.startswith(FACTORY_MODULES):
            kinds += (ast.FunctionDef,)
        for node in ast.parse(path.read_text()).body if kinds else ():
            if isinstance(node, kinds) and not node.name.startswith("_"):
                found.add(f"{module}.{node.name}")
    return frozenset(found)


@functools.cache
def allowed_targets() -> frozenset[str]:
    return project_targets() | frozenset(SWAPPABLE) | frozenset(SWAPPABLE.values())


def allowed(target: object) -> bool:
    return isinstance(target, str) and target in allowed_targets()


def _logging_factory(path: str, key: object, value: object) -> bool:
    """Python's logging.config builds `()` factories and handler `class`es: code too."""
    if key == "()":
        return True
    return key == "class" and "_logging." in path and not str(value).startswith("logging.")


def _items(node, prefix: str = ""):
    """(dotted key, key, value, parent) of every leaf of a plain container, at any depth."""
    for key, value in node.items() if isinstance(node, dict) else enumerate(node):
        if isinstance(value, (dict, list)):
            yield from _items(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", key, value, node


def untrusted(cfg: DictConfig | ListConfig | dict) -> list[tuple[str, object]]:
    """(key, target) of every `_target_` outside the allowed set and every logging factory, in
    a config already resolved (see `resolved`)."""
    node = OmegaConf.to_container(cfg) if OmegaConf.is_config(cfg) else cfg
    return [(path, value) for path, key, value, _ in _items(node)
            if (key == "_target_" and not allowed(value)) or _logging_factory(path, key, value)]


def resolved(cfg: DictConfig, run_dir: Path | None = None) -> dict:
    """`cfg` as plain data with every interpolation and resolver resolved, `${hydra:...}` as in a
    run in `run_dir`. A value that cannot be resolved cannot be checked: refused."""
    with resolving_as_run(cfg, run_dir) as cfg:
        try:
            return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
        except Exception as e:  # OmegaConf's and any resolver's: no common base class
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"a value of the config cannot be resolved ({first}), so it cannot "
                            "be checked for the code it names: refused. If you trust it, pass "
                            "--trust") from None


def local_path(value: object, base: Path | None = None) -> Path | None:
    """The absolute local path a path argument names, None for a remote URI or a non-string."""
    if not isinstance(value, str) or not value:
        return None
    for scheme in _LOCAL_SCHEMES:
        if value.startswith(scheme):
            value = value[len(scheme):]
            break
    if "://" in value:
        return None
    path = Path(value).expanduser()
    return Path(os.path.realpath(path if path.is_absolute() else (base or Path.cwd()) / path))


def _path_values(node: dict):
    """(dotted key, value, absolute local path or None) of every path argument. A `filename`
    lies in its sibling `dirpath`."""
    for path, key, value, parent in _items(node):
        if key in PATH_KEYS and isinstance(value, str):
            base = local_path(parent.get("dirpath")) if key == "filename" and isinstance(
                parent, dict) else None
            yield path, value, local_path(value, base)


def roots(trusted: dict, *folders: Path | None) -> tuple[frozenset[Path], frozenset[str]]:
    """(local folders, remote URIs) that path arguments may name: `folders` (the run's), and
    every path argument of the user's own configuration `trusted` (resolved); Hydra's run and
    sweep folders by their parents, since their names hold the time."""
    local, remote = {local_path(str(f)) for f in folders if f is not None}, set()
    for key, value, path in _path_values(trusted):
        if path is None:
            remote.add(value)
        else:
            local.add(path.parent if key in ("hydra.run.dir", "hydra.sweep.dir") else path)
    return frozenset(local), frozenset(remote)


def outside(node: dict, allowed_roots: tuple[frozenset[Path], frozenset[str]]):
    """(key, value) of every path argument that leaves the allowed roots."""
    local, remote = allowed_roots
    return [(key, value) for key, value, path in _path_values(node)
            if (value not in remote if path is None
                else not any(path == root or root in path.parents for root in local))]


def check(cfg: DictConfig, source: str, trust: bool = False, run_dir: Path | None = None,
          allowed_roots: tuple[frozenset[Path], frozenset[str]] | None = None) -> None:
    """Refuse `cfg` (read from `source`) when, resolved as it will be instantiated, it names
    code outside the allowed set, or (given `allowed_roots`) a file outside them."""
    if trust:
        return
    cfg = cfg if OmegaConf.is_config(cfg) else OmegaConf.create(cfg)
    node = resolved(cfg, run_dir)
    refused = untrusted(node)
    what = "would run code that is not on the allow-list (runs/trust.py)"
    if not refused and allowed_roots is not None:
        refused = outside(node, allowed_roots)
        what = ("names a file or folder outside the run folder and the data and output roots; "
                "give that key on the command line to choose the place yourself")
    if refused:
        key, value = refused[0]
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise UserError(f"refusing the config of {source}: {key}={value} {what}{more}. "
                        "Read the config; if you trust it, pass --trust")
