"""What keeps a run safe to continue: stop at the first non-finite loss before it reaches a
checkpoint, and record a SIGTERM (what cluster schedulers send) as an interruption."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

from resnet_exp.core.errors import UserError

SIGTERM_EXIT = 128 + signal.SIGTERM  # the shell's status for a process ended by SIGTERM: 143
SIGINT_EXIT = 128 + signal.SIGINT  # and by Ctrl-C: 130


class NonFinite(UserError):
    """The training loss or the weights became NaN or infinite."""


class StopOnNonFinite(pl.Callback):
    """Stops training at the first NaN or infinite loss, naming the step, and refuses to write a
    checkpoint whose weights are not finite (the last update can overflow with a finite loss):
    last.ckpt keeps the last good epoch.

    Lightning's own checks do not do this: EarlyStopping(check_finite=True) looks once per epoch
    and ends the run as if it had finished, after ModelCheckpoint has already saved the NaN
    weights as last.ckpt; Trainer(detect_anomaly=True) (`debug=anomaly`) slows every step.
    The flag stays on the device (no host sync per step); the host reads it every
    `trainer.log_every_n_steps` steps, when logging syncs anyway, and before every checkpoint.
    """

    def __init__(self) -> None:
        # since the last check: a finite flag per batch, on the device, and where it was
        self._finite: list[torch.Tensor] = []
        self._where: list[tuple[int, int, int, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        loss = loss.detach()
        self._finite.append(torch.isfinite(loss).all())
        self._where.append((trainer.global_step, trainer.current_epoch, batch_idx, loss))
        if len(self._finite) >= max(trainer.log_every_n_steps, 1):
            self._check(trainer, pl_module)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._check(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._check(trainer, pl_module)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        # raising here aborts the save
        self._check(trainer, pl_module)
        weights = {k: v for k, v in checkpoint.get("state_dict", {}).items()
                   if v.is_floating_point()}
        if weights and not torch.stack([v.isfinite().all() for v in weights.values()]).all():
            bad = [k for k, v in weights.items() if not v.isfinite().all()]
            raise NonFinite(
                f"the weights became NaN or infinite by global step {trainer.global_step} (epoch "
                f"{trainer.current_epoch}; {len(bad)} tensors, e.g. {bad[0]}) while the loss was "
                f"still finite; training stopped and {self._kept(trainer)}. {self._advice(trainer)}"
            )

    def _check(self, trainer, pl_module) -> None:
        if not self._finite:
            return
        finite = torch.stack(self._finite).tolist()  # the one host-device sync
        where, self._finite, self._where = self._where, [], []
        if all(finite):
            return
        step, epoch, batch, loss = where[finite.index(False)]
        raise NonFinite(
            f"the training loss became {loss.float().mean().item()} at epoch {epoch}, batch "
            f"{batch} (global step {step}); training stopped and {self._kept(trainer)}. "
            f"{self._advice(trainer)}"
        )

    @staticmethod
    def _kept(trainer) -> str:
        last = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else ""
        return f"{last} keeps the last good epoch" if last else "no checkpoint was written"

    @staticmethod
    def _advice(trainer) -> str:
        lr = f" (now {trainer.optimizers[0].param_groups[0]['lr']:g})" if trainer.optimizers else ""
        return (f"Lower optimizer.lr{lr}, set trainer.gradient_clip_val, or find the operation "
                "with debug=anomaly")


class StopTogetherOnSigterm(pl.Callback):
    """A SIGTERM to the ranks of a multi-process run (a scheduler's preemption: srun signals
    every task) stops them all after the same batch, so that last.ckpt is written and the run is
    recorded `interrupted`, as in one process.

    Lightning 2.6's own handler does neither: in the signal handler it tells its launcher to kill
    the other local ranks and broadcasts a flag from rank 0 (signal_connector.py,
    `_sigterm_notifier_fn`), a collective at whatever point each rank was interrupted, which the
    others never match; and each rank stops at the end of the batch in which its own signal came
    (training_epoch_loop.py), the others going on into the next collective. Either gives gloo's
    "Connection reset by peer" or a hang, no checkpoint, `failed`. Here the handler only notes
    the signal; each training batch starts with every rank's note reduced to one (a one-number
    all-reduce), and Lightning's flag is set on all ranks at once, so they all stop after that
    batch. A single process keeps Lightning's handler as it is."""

    def __init__(self) -> None:
        self._noted = False

    def on_train_start(self, trainer, pl_module) -> None:
        # after Lightning registered its handler (Trainer._run), in the main thread only
        if trainer.world_size > 1 and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._note)

    def _note(self, signum, frame) -> None:
        self._noted = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.world_size > 1:
            noted = torch.tensor([int(self._noted)], device=pl_module.device)
            if trainer.strategy.reduce(noted, reduce_op="sum").item():
                trainer._signal_connector.received_sigterm = True


def _exit(signum, frame) -> None:
    # While a Trainer runs, Lightning installs its own handler, which calls this one too: let it
    # stop at the end of the batch instead.
    if signal.getsignal(signal.SIGTERM) is _exit:
        raise SystemExit(SIGTERM_EXIT)


@contextmanager
def exit_on_sigterm():
    """SIGTERM (what cluster schedulers send) ends the run as an interruption, recorded as such,
    with status 143: outside the Trainer by this handler, inside it by Lightning's, whose
    exception would otherwise exit with status 0."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit) if main_thread else None
    try:
        yield
    except SIGTERMException as e:
        raise SystemExit(SIGTERM_EXIT) from e
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
