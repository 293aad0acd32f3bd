"""What Hydra knows about the running job, read once at the entry point and passed down.

Hydra keeps it in a global (`HydraConfig`); read from deep inside, it tied every module to
running under Hydra's main and hid what a function depends on. The entry points
(`python -m resnet_exp`'s main, reproduce's job) call `RunContext.from_hydra()` once; eval,
analyze, the benchmarks and tests build one from a composed config (`RunContext.of(cfg.hydra)`)
or by hand. This module and the Hydra callbacks (hydra_hooks.py) are the only ones that touch
Hydra's global.

>>> RunContext(run_dir=Path("outputs/runs/x"), overrides=("model=vgg08",)).multirun
False
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write


@dataclass(frozen=True)
class RunContext:
    """run_dir: the job's folder; overrides: the task overrides it was given; choices: the option
    of each config group; multirun: a job of a sweep; job_num: its number there; sweep_dir; and
    sweeper: the sweeper's settings as plain data (an Optuna job's trial, storage, pruner)."""

    run_dir: Path | None = None
    overrides: tuple[str, ...] = ()
    choices: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    multirun: bool = False
    job_num: int | None = None
    sweep_dir: Path | None = None
    sweeper: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, hydra: DictConfig) -> RunContext:
        """The context a composed config's `hydra` node describes."""
        from hydra.types import RunMode

        output_dir = OmegaConf.select(hydra, "runtime.output_dir", default=None)
        multirun = hydra.get("mode") == RunMode.MULTIRUN
        sweeper = _plain(hydra.sweeper) if "sweeper" in hydra else {}
        return cls(
            run_dir=Path(output_dir) if output_dir else None,
            overrides=tuple(OmegaConf.select(hydra, "overrides.task", default=None) or ()),
            choices=MappingProxyType(dict(OmegaConf.select(hydra, "runtime.choices",
                                                           default=None) or {})),
            multirun=multirun,
            job_num=OmegaConf.select(hydra, "job.num", default=None),
            sweep_dir=Path(hydra.sweep.dir) if multirun else None,
            sweeper=MappingProxyType(sweeper),
        )

    @classmethod
    def from_hydra(cls) -> RunContext:
        """The running job's context, from Hydra's global: the entry points call this once."""
        from hydra.core.hydra_config import HydraConfig

        return cls.of(HydraConfig.get()) if HydraConfig.initialized() else cls()


def _plain(node: DictConfig) -> dict:
    """`node` as plain data, resolved key by key; a value that cannot resolve from Hydra's node
    alone (the sweeper's `direction: ${monitor_mode}` names the task config) is left as written."""
    raw = OmegaConf.to_container(node, resolve=False)
    plain = {}
    for key in node:
        try:
            value = node[key]
            plain[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(
                value) else value
        except Exception:  # OmegaConf's interpolation errors: no common base class
            plain[key] = raw[key]
    return plain


@contextmanager
def resolving_as_run(cfg: DictConfig, run_dir: Path | None) -> Iterator[DictConfig]:
    """A copy of `cfg` set as Hydra's current config, its output folder `run_dir` where it has
    none yet, so that `${hydra:...}` resolves as in a run there; the global is put back after."""
    from hydra.core.hydra_config import HydraConfig

    cfg = copy.deepcopy(cfg)
    hydra_config = HydraConfig.instance()
    before = hydra_config.cfg
    if OmegaConf.select(cfg, "hydra.runtime", default=None) is not None:  # a composed node
        with read_write(cfg.hydra), open_dict(cfg.hydra):  # Hydra's own copy is read-only
            unset = OmegaConf.is_missing(cfg.hydra.runtime, "output_dir") or \
                cfg.hydra.runtime.get("output_dir") is None
            if unset and run_dir is not None:
                cfg.hydra.runtime.output_dir = str(run_dir)
            if OmegaConf.select(cfg, "hydra.job.num", default=None) is None:
                cfg.hydra.job.num = 0
        hydra_config.set_config(cfg)
    try:
        yield cfg
    finally:
        hydra_config.cfg = before


def set_as_run(cfg: DictConfig) -> None:
    """Make `cfg` (composed with its hydra node) Hydra's current config for good: eval and
    analyze build a run's parts outside Hydra's main, whose `${hydra:...}` must resolve."""
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)
