"""Checkpoints written atomically and read without running code.

Writing: Lightning's TorchCheckpointIO saves through an fsspec transaction, which writes a
temporary file in the system temp folder and then moves it into place: a copy, not a rename,
when /tmp is another file system (node-local /tmp beside shared scratch on a cluster), and with
no fsync, so a kill or a crash during the copy leaves a truncated last.ckpt. AtomicCheckpointIO
writes beside the target, fsyncs and renames (atomic on POSIX): readers see the old checkpoint or
the new one, never half of one.

Reading: `torch.load(weights_only=True)` unpickles tensors and plain containers only, so a
checkpoint cannot run code; every failure becomes a UserError saying what is wrong with the file.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import nn

from resnet_exp.errors import UserError


def _write_error(path: Path, error: OSError) -> UserError:
    if error.errno == errno.ENOSPC:
        return UserError(
            f"no space left on the device to write {path}: free some space (a checkpoint here "
            "needs about as much as the last one), or write runs elsewhere with hydra.run.dir=..."
        )
    return UserError(
        f"cannot write {path} ({error.strerror or error}): the output folder must be a writable "
        "folder; choose another with hydra.run.dir=... (hydra.sweep.dir=... for a sweep)"
    )


def save(checkpoint: dict[str, Any], path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise _write_error(path, e) from e
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide checkpoints from the rest of a team
        with os.fdopen(fd, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _write_error(path, e) from e
        raise
    try:  # the rename itself survives a power cut once the folder is synced
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename has happened


def load(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A Lightning checkpoint as a dict, read with weights_only=True."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a checkpoint file") from None
    except pickle.UnpicklingError as e:
        refused = re.search(r"GLOBAL ([\w.]+)", str(e))
        if refused:
            raise UserError(
                f"{path} holds Python objects, not only tensors (it imports "
                f"{refused.group(1)}): loading it could run code, so it was not loaded. Use "
                "checkpoints written by resnet_exp"
            ) from None
        raise UserError(_corrupt(path, e)) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as e:
        raise UserError(_corrupt(path, e)) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"{path} is not a Lightning checkpoint: it has no state_dict")
    return checkpoint


def _corrupt(path: Path, error: BaseException) -> str:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return (
        f"checkpoint {path} is corrupt or truncated and cannot be read ({reason[:120]}). "
        "Delete it: resume then starts from the other checkpoint, or from scratch"
    )


def check_compatible(module: nn.Module, checkpoint: dict[str, Any], path: str | Path) -> None:
    """Raise a UserError naming the differences when the checkpoint's weights do not fit `module`
    (a checkpoint of another model, or a config changed since it was written)."""
    expected, saved = module.state_dict(), checkpoint["state_dict"]
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    resized = [
        f"{k} is {tuple(saved[k].shape)} there, {tuple(v.shape)} here"
        for k, v in expected.items()
        if k in saved and isinstance(saved[k], torch.Tensor) and saved[k].shape != v.shape
    ]
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
        return load(path, map_location=map_location or "cpu")


def resume_step(module: nn.Module, path: str | Path | None) -> int:
    """The logging step a run resumed from `path` continues at (0 without a checkpoint), once
    the checkpoint is known to be readable and to hold weights that fit `module`."""
    if path is None:
        return 0
    checkpoint = load(path)
    check_compatible(module, checkpoint, path)
    loop = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
    return int(loop.get("_batches_that_stepped", checkpoint.get("global_step", 0)))


class ModelCheckpoint(pl.callbacks.ModelCheckpoint):
    """Lightning's ModelCheckpoint, with `save_last` writing last.ckpt at every save point again.

    Since Lightning 2.6 last.ckpt is written only when a top-k checkpoint is written at the same
    step: with save_top_k=1 it is a copy of best.ckpt from the last improving epoch (the change is
    described in openclimatefix/pvnet PR #544), so `test_last/*` would test the best weights and a
    resume would go back to that epoch. Here, a save point where Lightning wrote nothing writes
    last.ckpt. Same class name, so the state key in checkpoints is unchanged.
    """

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_skipped(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_skipped(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """SIGTERM (a cluster scheduler's notice) in a training epoch: last.ckpt of the batch
        just finished, so a resume loses nothing. Lightning raises SIGTERMException there only
        between batches, with every counter consistent; the resume from the middle of the epoch
        is exact (the data module, the module, EpochSeed and GradientFlow carry their share of
        the epoch in progress). Replaces Lightning's save-on-exception, which would write a
        checkpoint named like best.ckpt."""
        if not (isinstance(exception, SIGTERMException) and self.save_last and self.dirpath):
            return
        # Only between two training batches of an epoch. Lightning also stops for SIGTERM
        # during validation (whose partial sums no checkpoint holds) and after an epoch's end
        # (which last.ckpt already is). With gradient accumulation, the gradients since the last
        # optimizer step would be in no checkpoint (and a mid-epoch resume of it is untested
        # here). In those cases last.ckpt stays the epoch end's, which replays exactly.
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        if not (trainer.training and 0 < done < trainer.num_training_batches
                and trainer.accumulate_grad_batches == 1):
            return
        path = os.path.join(self.dirpath, self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)
        trainer.save_checkpoint(path)
        self.last_model_path = path

    def _save_last_if_skipped(self, trainer) -> None:
        # skips sanity checks, non-fit stages, and a step already saved (the top-k save did it)
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
