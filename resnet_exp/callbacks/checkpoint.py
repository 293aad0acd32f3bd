"""The checkpoint callback: Lightning's, with last.ckpt the last save point again and a SIGTERM
checkpoint after the batch in progress."""

from __future__ import annotations

import os

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException


class ModelCheckpoint(pl.callbacks.ModelCheckpoint):
    """Lightning's ModelCheckpoint, with `save_last` writing last.ckpt at every save point again.

    Since Lightning 2.6 last.ckpt is written only when a top-k checkpoint is written at the same
    step: with save_top_k=1 it is a copy of best.ckpt from the last improving epoch (the change
    is described in github.com/openclimatefix/pvnet/pull/544), so `test_last/*` would test the
    best weights and a resume would go back to that epoch. Here, a save point where Lightning
    wrote nothing writes last.ckpt. Same class name, so the state key in checkpoints is
    unchanged.
    """

    def __init__(self, *args, save_on_train_epoch_end: bool | None = True, **kwargs) -> None:
        # After the epoch's end hooks rather than at validation's end: the checkpoint then holds
        # the epoch's train metrics too (Classifier.on_save_checkpoint), which a run resumed
        # after its last epoch reports as final/* without training again.
        super().__init__(*args, save_on_train_epoch_end=save_on_train_epoch_end, **kwargs)

    def load_state_dict(self, state_dict: dict) -> None:
        """Paths saved under another folder (the run folder was moved or renamed since) are read
        as this folder's: a moved run resumes into best.ckpt/last.ckpt, its best score kept,
        where Lightning would forget the best and write best-v1.ckpt beside the old file."""
        saved = state_dict.get("dirpath")
        if saved and self.dirpath and os.path.normpath(saved) != os.path.normpath(self.dirpath):
            def moved(path):
                if isinstance(path, str) and path.startswith(saved):
                    return os.path.join(self.dirpath, os.path.relpath(path, saved))
                return path

            state_dict = {key: moved(value) for key, value in state_dict.items()}
            state_dict["best_k_models"] = {moved(k): v for k, v in
                                           state_dict.get("best_k_models", {}).items()}
            state_dict["dirpath"] = self.dirpath
        super().load_state_dict(state_dict)

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
