"""The arguments a config gives a class, checked against the types its signature declares, before
it is built: Hydra passes any value through, so `augmentation.flip='no'` (a non-empty string)
turned flips on, and `augmentation.crop_padding=abc` failed at the first batch with a TypeError
from inside torch. An int given where a float is declared is passed as a float (torch's Beta and
Dirichlet samplers refuse integer parameters).

>>> from omegaconf import OmegaConf
>>> node = OmegaConf.create({"_target_": "resnet_exp.data.augment.Augmentation", "flip": "yes"})
>>> checked(node, "augmentation")
Traceback (most recent call last):
...
resnet_exp.core.errors.UserError: augmentation.flip=yes: give true or false
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from resnet_exp.core.config import text
from resnet_exp.core.errors import UserError

FLOAT32_MAX = 3.4028234663852886e38
_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
          type(None): "null"}


# The config's nodes a run builds, each checked before the run folder is claimed.
BUILT = ("data", "model", "optimizer", "scheduler", "module", "trainer")


def check_config(cfg: DictConfig) -> None:
    """Every node a run builds (`BUILT`, each callback and logger), checked as `checked` does."""
    for key in BUILT:
        checked(cfg.get(key), key)
    for group in ("callbacks", "logger"):
        for key, node in (cfg.get(group) or {}).items():
            checked(node, f"{group}.{key}")


def checked(node: DictConfig, where: str) -> DictConfig:
    """`node`, and each node with a `_target_` inside it, with every argument whose declared type
    is a plain one (bool, int, float, str, None, a Literal, a list, a mapping, or a union of these)
    checked against its value, and ints where floats are declared made floats; a UserError
    naming the key, the value and what it takes otherwise."""
    if not OmegaConf.is_dict(node):
        return node
    node = OmegaConf.create(OmegaConf.to_container(node, resolve=True))
    _check(node, where)
    return node


def _check(node: DictConfig, where: str) -> None:
    hints, parameters = _declared(node.get("_target_"))
    for key in list(node.keys()):
        value = node[key]
        if isinstance(value, float) and math.isfinite(value) and abs(value) > FLOAT32_MAX:
            # a finite value beyond float32's range overflows in the first tensor op
            raise UserError(f"{where}.{key}={value}: beyond float32's range (3.4e38); give a "
                            "smaller number")
        if str(key) in parameters and str(key) in hints and not str(key).startswith("_"):
            hint = hints[str(key)]
            if not _fits(value, hint):
                shown = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
                raise UserError(f"{where}.{key}={text(shown)}: give {_describe(hint)}")
            if isinstance(value, int) and not isinstance(value, bool) and _wants_float(hint):
                node[key] = float(value)
        if OmegaConf.is_dict(value):  # a node of its own: its `_target_`'s arguments
            _check(value, f"{where}.{key}")


@functools.cache  # every node is checked before the run folder is claimed and again when built
def _declared(target) -> tuple[dict, frozenset]:
    """(type hints, parameter names) of a `_target_`'s function, or of its class's constructors
    along the MRO while each passes `**kwargs` on to the next; empty for what cannot be read (a C
    extension, a name that does not import: instantiate says why)."""
    if not isinstance(target, str):
        return {}, frozenset()
    try:
        obj = get_object(target)
        functions = [obj] if not inspect.isclass(obj) else [
            c.__dict__["__init__"] for c in obj.__mro__ if "__init__" in c.__dict__]
        hints, names = {}, set()
        for function in functions:
            parameters = inspect.signature(function).parameters
            hints = {**typing.get_type_hints(function), **hints}
            names |= set(parameters)
            if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
                break
        return hints, frozenset(names)
    except Exception:  # any import or annotation error: left to instantiate's own message
        return {}, frozenset()


def _not_bool(kind: type):
    return lambda value: isinstance(value, kind) and not isinstance(value, bool)


# what a config value of each scalar annotation may be (an int is a float; a bool is no number)
_SCALARS = {bool: lambda value: isinstance(value, bool), int: _not_bool(int),
            float: _not_bool(int | float), str: lambda value: isinstance(value, str),
            type(None): lambda value: value is None}


def _fits(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arm) for arm in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint in _SCALARS:
        return _SCALARS[hint](value)
    return _fits_class(value, hint, origin or hint)


def _fits_class(value, hint, container) -> bool:
    if not isinstance(container, type):
        return True  # a callable, a type variable: not checkable from a config value
    if issubclass(container, Mapping):
        return OmegaConf.is_dict(value)
    if issubclass(container, str | os.PathLike):
        return isinstance(value, str)
    if issubclass(container, Sequence):
        items = [arm for arm in typing.get_args(hint) if arm is not Ellipsis]
        return OmegaConf.is_list(value) and (
            len(items) != 1 or all(_fits(item, items[0]) for item in value))
    # another class (Augmentation, a Tensor): a node to instantiate or a list, never a scalar
    return not isinstance(value, str | int | float | bool)


def _wants_float(hint) -> bool:
    arms = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) \
        else (hint,)
    return float in arms and int not in arms


def _describe(hint) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arm) for arm in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    if hint in _WORDS:
        return _WORDS[hint]
    if isinstance(hint, type) and hint.__module__.startswith("resnet_exp"):
        return f"a node with a _target_ ({hint.__name__})"
    if origin in (list, tuple, Sequence):
        items = [arm for arm in typing.get_args(hint) if arm is not Ellipsis]
        return f"a list, each {_describe(items[0])}" if len(items) == 1 else "a list"
    return getattr(hint, "__name__", str(hint))
