"""Checkpoints written atomically and read without running code.

Writing: Lightning's TorchCheckpointIO saves through an fsspec transaction, which writes a
temporary file in the system temp folder and then moves it into place: a copy, not a rename,
when /tmp is another file system (node-local /tmp beside shared scratch on a cluster), and with
no fsync, so a kill or a crash during the copy leaves a truncated last.ckpt. AtomicCheckpointIO
writes through `runs.atomic.atomic_write`: readers see the old checkpoint or the new one.

Reading: `torch.load(weights_only=True)` unpickles tensors and plain containers only, so a
checkpoint cannot run code; every failure becomes a UserError saying what is wrong with the file.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from resnet_exp.core.errors import UserError
from resnet_exp.runs.atomic import atomic_write

# Globals that torch's own (legacy) pickles name to rebuild tensors: not "Python objects".
_TENSOR_REBUILDERS = ("torch._utils", "torch.", "collections.OrderedDict")


def save(checkpoint: dict[str, Any], path: str | Path) -> None:
    """torch.save through `atomic_write`: a temporary file beside `path`, fsync, rename."""
    atomic_write(path, lambda f: torch.save(checkpoint, f), binary=True,
                 needed=lambda: _size_of(checkpoint))


def _size_of(checkpoint: dict[str, Any]) -> int:
    """About the bytes the checkpoint takes on disk: its tensors (weights, optimizer state)."""
    seen: set[int] = set()

    def walk(node) -> int:
        if isinstance(node, torch.Tensor):
            key = node.untyped_storage().data_ptr() if node.device.type != "meta" else id(node)
            if key in seen:
                return 0
            seen.add(key)
            return node.untyped_storage().nbytes()
        if isinstance(node, dict):
            return sum(walk(v) for v in node.values())
        if isinstance(node, (list, tuple)):
            return sum(walk(v) for v in node)
        return 0

    return walk(checkpoint)


def read(path: str | Path, map_location: Any = "cpu") -> Any:
    """Whatever the file holds, read with weights_only=True: tensors and plain containers."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a checkpoint file") from None
    except pickle.UnpicklingError as e:
        refused = re.search(r"GLOBAL ([\w.]+)", str(e))
        imports = [refused.group(1)] if refused else pickled_imports(path)
        if imports:
            raise UserError(
                f"{path} holds Python objects, not only tensors (it imports "
                f"{', '.join(imports[:3])}): loading it could run code, so it was not loaded. "
                "Use checkpoints written by resnet_exp, or weights saved as a state dict"
            ) from None
        raise UserError(_corrupt(path, e)) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as e:
        raise UserError(_corrupt(path, e)) from None


def pickled_imports(path: Path, limit: int = 1 << 24) -> list[str]:
    """What a plain pickle file (not torch's zip format) would import to rebuild its objects,
    read from its opcodes without running any: `module.name` of each GLOBAL / STACK_GLOBAL."""
    found, pushed, memo = [], [], {}
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(io.BytesIO(f.read(limit))):
                if op.name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(pushed) >= 2:
                    found.append(f"{pushed[-2]}.{pushed[-1]}")
                elif op.name == "MEMOIZE" and pushed:
                    memo[len(memo)] = pushed[-1]
                elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                    pushed.append(memo.get(arg))
                elif isinstance(arg, str):
                    pushed.append(arg)
    except Exception:  # not a pickle, or cut short: only what was read so far counts
        pass
    return [name for name in dict.fromkeys(found) if not name.startswith(_TENSOR_REBUILDERS)]


def load(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A Lightning checkpoint as a dict, read with weights_only=True."""
    checkpoint = read(path, map_location)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"{path} is not a Lightning checkpoint: it has no state_dict")
    return checkpoint


def _corrupt(path: Path, error: BaseException) -> str:
    text = str(error).strip()
    if "weights_only" in text:  # torch's advice there (weights_only=False) would run the file
        reason = text.split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        reason = f"unreadable as tensors: {reason}" if reason and "weights_only" not in reason \
            else "unreadable as tensors"
    else:
        reason = (text.splitlines() or [type(error).__name__])[0]
    return (
        f"checkpoint {path} is corrupt or truncated and cannot be read ({reason[:120]}). "
        "Delete it: resume then starts from the other checkpoint, or from scratch"
    )


def diff(expected: Mapping[str, Any], saved: Mapping[str, Any]):
    """(missing, unexpected, resized) keys of `saved` against `expected`, two state dicts:
    in `expected` only, in `saved` only, and in both with tensors of different shapes."""
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    resized = [k for k, v in expected.items() if k in saved and isinstance(saved[k], torch.Tensor)
               and isinstance(v, torch.Tensor) and saved[k].shape != v.shape]
    return missing, unexpected, resized


def check_compatible(module: nn.Module, checkpoint: dict[str, Any], path: str | Path) -> None:
    """Raise a UserError naming the differences when the checkpoint's weights do not fit `module`
    (a checkpoint of another model, or a config changed since it was written)."""
    expected, saved = module.state_dict(), checkpoint["state_dict"]
    missing, unexpected, resized = diff(expected, saved)
    resized = [f"{k} is {tuple(saved[k].shape)} there, {tuple(expected[k].shape)} here"
               for k in resized]
    if not (missing or unexpected or resized):
        return
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("resized", resized)):
        if keys:
            more = f" and {len(keys) - 2} more" if len(keys) > 2 else ""
            parts.append(f"{len(keys)} {what} ({'; '.join(keys[:2])}{more})")
    raise UserError(
        f"{path} holds the weights of a different model than the config builds: "
        f"{', '.join(parts)}. Use the config of the run that wrote it (its run folder), without "
        "overrides that change the model or the number of classes"
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with `save` and `load` above: atomic writes, weights_only reads
    (whatever Lightning asks for)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        # `read`, not `load`: ddp_spawn hands rank 0's bare state dict to the main process through
        # this plugin (Lightning's _MultiProcessingLauncher, `.temp.ckpt`), a dict without
        # "state_dict"; what a run resumes from, train.py has checked with `load` already
        return read(path, map_location=map_location or "cpu")


def resume_step(module: nn.Module, path: str | Path | None) -> int:
    """The logging step a run resumed from `path` continues at (0 without a checkpoint), once
    the checkpoint is known to be readable and to hold weights that fit `module`."""
    if path is None:
        return 0
    checkpoint = load(path)
    check_compatible(module, checkpoint, path)
    loop = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
    return int(loop.get("_batches_that_stepped", checkpoint.get("global_step", 0)))
