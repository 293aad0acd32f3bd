"""The search space of an Optuna search: Hydra's sweep syntax read as Optuna distributions
(the table in optuna_sweeper.py's docstring), from the config's `params` and the command line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from resnet_exp.core.errors import UserError


def distribution(override: Override):
    """The Optuna distribution of one sweep override (the module docstring's table)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    if isinstance(value, ChoiceSweep) or not override.is_sweep_override():
        choices = list(override.sweep_iterator()) if isinstance(value, ChoiceSweep) else [value]
        return CategoricalDistribution(choices)
    log = "log" in value.tags
    if isinstance(value, RangeSweep):  # from its first to its last value, as Hydra lists them
        values = list(override.sweep_iterator())
        if not values:
            raise ValueError(f"{override.input_line}: an empty range")
        kind = IntDistribution if all(isinstance(n, int) for n in (*values, value.step)) \
            else FloatDistribution
        return kind(values[0], values[-1], log=log, step=value.step)
    if isinstance(value, IntervalSweep):
        if "int" in value.tags:
            return IntDistribution(int(value.start), int(value.end), log=log)
        return FloatDistribution(value.start, value.end, log=log)
    raise ValueError(f"{override.input_line}: not a search space Optuna can sample "
                     "(choice, range, interval, or a comma list)")


def search_space(params: Mapping[str, Any] | None, arguments: list[str]):
    """(distributions by key, fixed overrides): `params` from the config, then the command
    line's own sweeps (which replace a key's range) and fixed values."""
    parser = OverridesParser.create()
    from_config = parser.parse_overrides([f"{k}={v}" for k, v in (params or {}).items()])
    space = {o.get_key_element(): distribution(o) for o in from_config}
    fixed = []
    for override in parser.parse_overrides(arguments):
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:  # a pinned key leaves the space: the command line wins over the searched range
            space.pop(override.get_key_element(), None)
            fixed.append(override.input_line)
    return space, fixed


def same_space(study, space: Mapping[str, Any]) -> None:
    """A continued study must search the space its trials were drawn from: Optuna's samplers
    fail, or mix incomparable trials, when a key's range or kind changes."""
    for trial in study.trials:
        for key, drawn in trial.distributions.items():
            if key in space and space[key] != drawn:
                raise UserError(f"the study {study.study_name!r} searched {key} over {drawn}, this "
                                f"search over {space[key]}: keep its space, or give a new "
                                "hydra.sweeper.storage (or study_name) for a new search")
