"""Training in several processes (trainer=ddp): which one owns the run folder, and what one
optimizer step consumes.

Every rank runs the whole of `train.train`: Lightning re-runs the command line for local ranks
1..devices-1 (pointing Hydra at the same run folder), srun starts one task per device under SLURM,
torchrun one per device. Only rank 0 writes run.json and metrics.json or prints; Lightning's
loggers and ModelCheckpoint are rank-0-only already.
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.strategies.launchers import (
    _MultiProcessingLauncher,
    _SubprocessScriptLauncher,
)
from pytorch_lightning.utilities import rank_zero_only

from resnet_exp.core.errors import UserError


def is_rank_zero() -> bool:
    """True in rank 0 of a multi-process job and in a single process. Known before the Trainer
    exists: Lightning reads it at import from RANK (torchrun), LOCAL_RANK (the processes its own
    launcher starts) or SLURM_PROCID (srun)."""
    return rank_zero_only.rank == 0


def batch_scale(trainer: pl.Trainer, batch_size: int) -> dict[str, int]:
    """The processes and the images one optimizer step averages over: `data.batch_size` is per
    process, and each process reads its own share of the data (Lightning's DistributedSampler)."""
    return {
        "world_size": trainer.world_size,
        "effective_batch_size": batch_size * trainer.world_size * trainer.accumulate_grad_batches,
    }


def check_launch(trainer: pl.Trainer, multirun: bool) -> None:
    """The ways of starting several processes that this run cannot use, refused before training.
    Lightning starts the other local ranks by re-running `sys.argv`, which in a local sweep
    would start the whole sweep again in every rank (`-m` and the sweep lists are in it). Not
    where the cluster environment starts them (srun under SLURM, torchrun): Lightning 2.6's
    DDPStrategy keeps its script launcher there too, and only its
    `creates_processes_externally` keeps it from starting children."""
    launcher = trainer.strategy.launcher
    if isinstance(launcher, _MultiProcessingLauncher):  # ddp_spawn, ddp_fork, ddp_notebook
        raise UserError(
            f"trainer.strategy=ddp_{launcher._start_method}: the processes it spawns train, "
            "test and then end with what they computed (the per-class results, gradient flow, "
            "the best checkpoint's score), which this process never sees. Use "
            "trainer.strategy=ddp (trainer=ddp): the ranks run the whole run, rank 0 records it")
    environment = getattr(trainer.strategy, "cluster_environment", None)
    external = environment is not None and environment.creates_processes_externally
    if multirun and isinstance(launcher, _SubprocessScriptLauncher) and not external:
        raise UserError(
            f"trainer.devices={trainer.num_devices} with strategy ddp inside a local sweep (-m): "
            "Lightning starts the other processes by re-running the command line, which would "
            "re-run the sweep. Run each multi-device job on its own (without -m), or sweep them "
            "on a cluster with hydra/launcher=slurm (srun starts the processes)"
        )
