"""The config tree: where it is, its groups, composing it, and reading overrides.

Imports Hydra only inside functions: `python -m resnet_exp --help` reads `CONF_DIR` and must not
pay for Hydra's parser or torch.

>>> override_key("+callbacks.gradient_flow.every_n_steps=5")
'callbacks.gradient_flow.every_n_steps'
>>> overrides_dict(["model=resnet20", "~callbacks.progress_bar", "optimizer.lr='0.1'",
...                 "model.residual=False", "data.classes=[cat,dog]"])
{'model': 'resnet20', 'optimizer.lr': '0.1', 'model.residual': 'false', 'data.classes': '[cat,dog]'}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
# The config groups (conf/ folders a run chooses an option of), in the order a reader follows a
# run: the console's config tree, TensorBoard's HPARAMS columns.
GROUPS = ("experiment", "trick", "data", "augmentation", "model", "optimizer", "scheduler",
          "trainer", "callbacks", "logger", "debug", "hparams_search", "analysis")


def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def parse_override(override: str):
    """Hydra's own reading of one command-line override (its `Override` object)."""
    return _parser().parse_override(override)


def override_key(override: str) -> str:
    """The key or group an override sets, without its `+`/`++`/`~` prefix."""
    return parse_override(override).key_or_group


def text(value) -> str:
    """A config value as an override writes it (true, null, 0.1, [a,b])."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(text(v) for v in value) + "]"
    return str(value)


def quote(value: str) -> str:
    r"""A string as a quoted Hydra override value (paths may hold spaces or `=`). Hydra reads a
    backslash as itself except in a run of them before a quote, so only such a run is doubled
    (before an inner quote, or at the end, before the closing one).

    >>> [parse_override("k=" + quote(v)).value() for v in ("a b", "c:\\d", "it's", "end\\")]
    ['a b', 'c:\\d', "it's", 'end\\']
    """
    import re

    text = re.sub(r"(\\+)(?='|$)", lambda run: run.group(1) * 2, str(value))
    return "'" + text.replace("'", "\\'") + "'"


def unquote(value: str) -> str:
    """An override value as typed, without the quotes around it (if any).

    >>> unquote("'a b'"), unquote('"x"'), unquote("plain")
    ('a b', 'x', 'plain')
    """
    value = value.strip()
    return value[1:-1] if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"" else value


def overrides_dict(overrides: list[str]) -> dict[str, str]:
    """key -> value of the overrides that set a value (deletions left out), last one wins. A
    sweep writes `model.residual=False` where the command line said `false`: one spelling."""
    parser = _parser()
    found = {}
    for override in overrides:
        parsed = parser.parse_override(override)
        if parsed.is_delete():
            continue
        found[parsed.key_or_group] = text(parsed.value())
    return found


PRINT_CONFIG = ("auto", "full", "groups", "none")  # extras.print_config's values (console.py)
JOB_FOLDER_CHARS = 150  # the overrides part of a sweep job's folder name, at most


def short_value(value: str) -> str:
    """An override value as a reader compares it: a sampled float to 4 significant digits.

    >>> short_value("0.08558894657793088"), short_value("resnet20"), short_value("1")
    ('0.08559', 'resnet20', '1')
    """
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() or len(value) <= 6 else f"{number:.4g}"


def job_folder(num: int, override_dirname: str, number: int | None = None) -> str:
    """A sweep job's folder: its number and its overrides with each key cut to its last part
    and each float to 4 significant digits (the full value is in its config), so TensorBoard's
    run list says what each run is (resolver `job_folder`, conf/hydra/). `number`, where the
    sweeper gives one, replaces the job's: an Optuna search's trial number, so that a continued
    study's folders and its best trial are named alike.

    >>> job_folder(3, "data.root=/data/c10,model.residual=true,model=vgg08,optimizer.lr=0.1,seed=2")
    '3_residual=true,model=vgg08,lr=0.1,seed=2'
    >>> job_folder(0, "optimizer.lr=0.08558894657793088,optimizer.weight_decay=7.035737e-05")
    '0_lr=0.08559,weight_decay=7.036e-05'
    """
    items = []
    for item in override_dirname.split(",") if override_dirname else []:
        key, sep, value = item.partition("=")
        if "/" in value:  # a path (data.root, model.weights): where, not what; and long
            continue
        items.append(f"{key.lstrip('+~').rsplit('.', 1)[-1]}{sep}{short_value(value)}")
    name = ",".join(items).replace("/", "_")[:JOB_FOLDER_CHARS]
    num = num if number is None else number
    return f"{num}_{name}" if name else str(num)


# The groups whose options set keys of other groups (an experiment sets the optimizer's lr): the
# short config print names what each of them set (console.print_config)
SETTING_OPTIONS = ("experiment", "trick", "hparams_search", "debug")


def set_by_options(choices: Mapping[str, Any]) -> dict[str, list[str]]:
    """For each chosen option of SETTING_OPTIONS, the keys its file sets, dotted, from the file
    itself (no composition: a run prints this before it builds anything).

    >>> set_by_options({"trick": "label_smoothing"})
    {'trick=label_smoothing': ['module.label_smoothing']}
    """
    from omegaconf import OmegaConf

    found = {}
    for group in SETTING_OPTIONS:
        path = CONF_DIR / group / f"{choices.get(group)}.yaml"
        if choices.get(group) is None or not path.is_file():
            continue
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        found[f"{group}={choices[group]}"] = _leaves(
            {k: v for k, v in raw.items() if k not in ("defaults", "hydra", group)})
    return found


def _leaves(node: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        keys += _leaves(value, dotted + ".") if isinstance(value, dict) and value else [dotted]
    return keys


def at_fractions(total: int, *fractions: float) -> list[int]:
    """Points at fractions of a run's length (resolver `at_fractions`, conf/scheduler/): He et
    al. 2016's CIFAR drops at 50% and 75% of 182 epochs, and of a shortened run alike.

    >>> at_fractions(182, 0.5, 0.75)
    [91, 136]
    """
    return [int(total * f) for f in fractions]


# A metric whose name holds one of these is better lower (val/loss, test/error, ece, time/epoch_s).
LOWER_IS_BETTER = ("loss", "err", "ece", "nll", "time/")
MONITOR_MODES = ("min", "max")


def monitor_mode(metric: str) -> str:
    """"min" or "max": whether a lower or a higher value of `metric` is better, from its name
    (resolver `monitor_mode`: conf/config.yaml's `monitor_mode` derives from `monitor`). The one
    home of "higher is better": the checkpoint, early stopping, the Optuna direction, the sweep
    table and the report read `monitor_mode`.

    >>> monitor_mode("val/acc"), monitor_mode("val/loss"), monitor_mode("val/acc_ema")
    ('max', 'min', 'max')
    """
    return "min" if any(token in str(metric).lower() for token in LOWER_IS_BETTER) else "max"


def better(mode: str):
    """The built-in (`min` or `max`) that picks the best of several scores under `mode`."""
    return min if mode == "min" else max


def register_resolvers() -> None:
    """The resolvers conf/ uses beyond Hydra's own; before any config is composed."""
    from omegaconf import OmegaConf

    for name, resolver in (("job_folder", job_folder), ("at_fractions", at_fractions),
                           ("monitor_mode", monitor_mode)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def compose(overrides: list[str], output_dir: Path | None = None, with_hydra: bool = False):
    """The config `python -m resnet_exp OVERRIDES` would run. With `output_dir`, Hydra's node is
    kept and set as Hydra's current config (runs/context.set_as_run), so `${hydra:...}` resolves
    as in a run there;
    `with_hydra` keeps the node without setting it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import open_dict

    from resnet_exp.core.errors import UserError
    from resnet_exp.runs.context import set_as_run

    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR),
                                   job_name="resnet_exp"):
            cfg = hydra_compose("config", overrides=overrides,
                                return_hydra_config=with_hydra or output_dir is not None)
    except HydraException as e:
        raise UserError(f"the overrides {' '.join(overrides)} do not compose: {e}") from None
    if output_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.hydra.job.num = 0
        set_as_run(cfg)
    return cfg


def _check_entries(cfg) -> None:
    """Each entry of `callbacks` and `logger` is a node to instantiate, or null."""
    from omegaconf import OmegaConf

    from resnet_exp.core.errors import UserError

    for group in ("callbacks", "logger"):
        entries = cfg.get(group) or {}
        for key, entry in entries.items() if OmegaConf.is_dict(entries) else [("", entries)]:
            if entry is None or (OmegaConf.is_dict(entry) and "_target_" in entry):
                continue
            value = OmegaConf.to_container(entry) if OmegaConf.is_config(entry) else entry
            where = f"{group}.{key}" if key else group
            raise UserError(f"{where}={text(value)}: each entry of {group} is a node with a "
                            f"_target_, or null to leave it out (~{where})")


def _check_counts(node, where: str, keys: tuple[str, ...]) -> None:
    """Each of `keys` that `node` sets is a whole number >= 1."""
    from resnet_exp.core.errors import UserError

    for key in keys:
        value = node.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise UserError(f"{where}.{key}={value}: give a whole number >= 1")


def check_run_settings(cfg) -> None:
    """The top-level keys a run needs before anything is built; called before torch is imported,
    so that a wrong one is answered in a second."""
    from resnet_exp.core.errors import UserError

    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        raise UserError(f"seed={cfg.seed!r}: the seed must be an integer, e.g. seed=1")
    threads = cfg.get("cpu_threads", "auto")
    if threads != "auto" and (not isinstance(threads, int) or isinstance(threads, bool)
                              or threads < 1):
        raise UserError(f"cpu_threads={threads}: give a number of threads >= 1, or auto")
    printed = cfg.get("extras", {}).get("print_config", "auto")
    if printed not in PRINT_CONFIG:
        raise UserError(f"extras.print_config={printed}: choose one of "
                        f"{', '.join(PRINT_CONFIG)}")
    if not isinstance(cfg.get("monitor", "val/acc"), str):
        raise UserError(f"monitor={cfg.monitor}: give the name of a logged metric, e.g. val/acc")
    if cfg.get("monitor_mode", "max") not in MONITOR_MODES:
        raise UserError(f"monitor_mode={cfg.monitor_mode}: choose min (lower {cfg.monitor} is "
                        "better) or max; by default it follows the metric's name")
    _check_entries(cfg)
    scheduler = cfg.get("scheduler") or {}
    if scheduler.get("interval", "epoch") not in ("step", "epoch"):
        raise UserError(f"scheduler.interval={scheduler.interval}: give step or epoch (when the "
                        "learning rate changes)")
    _check_counts(scheduler, "scheduler", ("frequency",))
    trainer = cfg.trainer
    _check_counts(trainer, "trainer",
                  ("accumulate_grad_batches", "log_every_n_steps", "check_val_every_n_epoch"))
    if trainer.get("max_epochs") == 0 or trainer.get("max_steps") == 0:
        raise UserError(
            "trainer.max_epochs=0 (or max_steps=0) trains nothing, so the run would end with no "
            "checkpoint to test: give at least 1; to test a run's saved weights use "
            "python -m resnet_exp.eval RUN_DIR")
