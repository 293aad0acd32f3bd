"""The one reader of the config: build everything from it, fit, test, record.

Nothing below this module receives `cfg`: the data module, model, LightningModule, callbacks,
loggers and trainer are ordinary classes built by `hydra.utils.instantiate` (STYLE.md, 1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig
from pytorch_lightning.utilities.exceptions import MisconfigurationException, SIGTERMException

from resnet_exp import runs
from resnet_exp.callbacks import ModelCheckpoint
from resnet_exp.callbacks.guards import SIGINT_EXIT, SIGTERM_EXIT
from resnet_exp.core import console, signatures
from resnet_exp.core.config import check_run_settings, override_key
from resnet_exp.core.errors import UserError
from resnet_exp.runs import extension, hparams, read, resume
from resnet_exp.runs.atomic import write_error
from resnet_exp.runs.context import RunContext
from resnet_exp.runs.extension import Extension, Resumed, RunEnd, RunStart
from resnet_exp.runs.record import RunRecord, lock
from resnet_exp.training import checkpoints, cpu_threads, distributed, speed
from resnet_exp.training.metrics import count_parameters, epoch_metrics


def build(node: DictConfig, what: str, given: tuple[str, ...] = (), **kwargs):
    """`instantiate`, with a failure turned into a message that names the config group and the
    overrides the user gave for it (`given`; a wrong type such as `optimizer.lr=abc` lands here)."""
    node = signatures.checked(node, what)
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, UserError):  # the class's own check says it best
            raise e.__cause__ from None
        raise UserError(_bad_config_message(what, e.__cause__ or e, given)) from e


def _bad_config_message(what: str, error: BaseException, overrides: tuple[str, ...]) -> str:
    given = [o for o in overrides if override_key(o).startswith(what)]
    hint = f" Overrides given for it: {' '.join(given)}." if given else ""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"Invalid {what} config: {type(error).__name__}: {first}.{hint}"


def check_optimizer(optimizer, given: tuple[str, ...] = ()) -> None:
    """Build the optimizer once over a dummy parameter: a bad value fails here, with its name
    and the overrides `given` for it, rather than after the data has loaded and the first epoch
    started."""
    try:
        optimizer([torch.nn.Parameter(torch.zeros(1))])
    except (TypeError, ValueError) as e:
        raise UserError(_bad_config_message("optimizer", e, given)) from e


def check_input_shape(model: torch.nn.Module, shape: tuple[int, ...], names: str,
                      num_classes: int | None = None) -> None:
    """Fail early, and clearly, when the model cannot take the data's images, or gives another
    number of class scores than the data has classes (the loss would fail at the first label
    past its last score)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            scores = model(torch.zeros(2, *shape))
        if num_classes is not None and scores.shape[-1] != num_classes:
            raise UserError(f"{names}: the model gives {scores.shape[-1]} class scores but the "
                            f"data has {num_classes} classes: leave model.num_classes at its "
                            "default (it follows data.num_classes) or give the same number")
    except RuntimeError as e:
        raise UserError(
            f"{names}: the model cannot take this data's {'x'.join(map(str, shape))} images "
            f"({str(e).splitlines()[0]}). Pick a model made for this input size (CIFAR-style "
            "models for small images, ImageNet ones for 224x224) or change data.image_size."
        ) from e
    finally:
        model.train(was_training)


@dataclass
class Parts:
    """Everything a run is made of, built from its config by `assemble`; `extensions`: those of
    its parts that plug into the run's moments (runs/extension.py), a logger record for each
    plain Lightning logger."""

    datamodule: pl.LightningDataModule
    model: torch.nn.Module
    module: pl.LightningModule
    callbacks: list[pl.Callback]
    loggers: list
    trainer: pl.Trainer
    extensions: list[Extension]


def assemble(cfg: DictConfig, context: RunContext | None = None, resume_from: Path | None = None,
             testing: bool = False, extra_callbacks: tuple[pl.Callback, ...] = ()) -> Parts:
    """Build the parts of a run from `cfg`, checking each before any data is read: the model
    must take the data's images, the optimizer its settings, each extension the model (an
    analysis its blocks), a checkpoint to resume the model.

    `resume_from`: the last.ckpt a resumed run continues from. `testing`: for a test of a saved
    checkpoint, without the checkpoint callback (nothing to save) and the analyses. `context`:
    the run's (runs/context.py)."""
    context = context or RunContext()
    pl.seed_everything(cfg.seed, workers=True)
    choices, given = context.choices, context.overrides
    datamodule = build(cfg.data, "data", given)
    model = build(cfg.model, "model", given)
    check_input_shape(model, (cfg.data.in_channels, cfg.data.image_size, cfg.data.image_size),
                      f"model={choices.get('model')} data={choices.get('data')}",
                      cfg.data.num_classes)
    optimizer = build(cfg.optimizer, "optimizer", given)
    check_optimizer(optimizer, given)
    module = build(cfg.module, "module", given, model=model, optimizer=optimizer,
                   scheduler=build(cfg.scheduler, "scheduler", given, _convert_="all"))
    callbacks = [build(c, "callbacks", given) for c in (cfg.get("callbacks") or {}).values() if c]
    callbacks = [c for c in callbacks if c is not None  # a builder's "off" (early_stopping)
                 and not (testing and isinstance(c, ModelCheckpoint))]
    analysis = build(cfg.analysis, "analysis", given) if cfg.get("analysis") and not testing \
        else None
    if not cfg.module.get("compile"):  # a compiled model would compile for the summary alone
        # the model summary's FLOPs and in/out sizes, from one image
        module.example_input_array = torch.zeros(1, cfg.data.in_channels, cfg.data.image_size,
                                                 cfg.data.image_size)
    resumed = Resumed(context.run_dir, checkpoints.resume_step(module, resume_from)) \
        if cfg.get("resume") else None
    loggers = [build(lg, "logger", given, **extension.resume_arguments(_target(lg), resumed))
               for lg in (cfg.get("logger") or {}).values() if lg]
    extensions = extension.extensions([*callbacks, *extra_callbacks, analysis], loggers)
    for each in extensions:
        each.check(model)
    trainer = build(cfg.trainer, "trainer", given, callbacks=[*callbacks, *extra_callbacks],
                    logger=loggers or False)
    return Parts(datamodule, model, module, callbacks, loggers, trainer, extensions)


def _target(node: DictConfig):
    """The class or function a node's `_target_` names; None where it cannot be found (building
    the node then says why)."""
    try:
        return get_object(str(node.get("_target_")))
    except Exception:  # ImportError, AttributeError, ValueError: `build` reports it
        return None


def fit_and_test(trainer: pl.Trainer, module, datamodule, ckpt_path: Path | None = None) -> dict:
    """Fit (from `ckpt_path` when resuming), then test the best checkpoint as `test/*` and the
    last one as `test_last/*`. Lightning's MisconfigurationException (a monitor no metric has,
    a scheduler interval that is neither step nor epoch) is the user's to fix: one line."""
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except MisconfigurationException as e:
        raise UserError(f"Lightning refuses the configuration: {str(e).splitlines()[0]}") from e
    except UserError:  # a write that failed says so already (atomic.WriteFailed is an OSError)
        raise
    except OSError as e:  # a folder a logger or checkpoint was pointed at cannot be written
        raise write_error(Path(e.filename or "."), e) from e
    # The last epoch's train/val numbers (testing replaces trainer.logged_metrics); a run
    # resumed after its last epoch trained none: they are in its last checkpoint.
    metrics = epoch_metrics(trainer)
    if not metrics and ckpt_path is not None:
        metrics = dict(checkpoints.load(ckpt_path).get("epoch_metrics", {}))
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and checkpoint.best_model_path:
        # Read before testing: loading a checkpoint restores the callback's state as it was
        # when that file was written (best.ckpt predates last.ckpt's path).
        best_path, last_path = checkpoint.best_model_path, checkpoint.last_model_path
        if checkpoint.best_model_score is not None:  # None: monitor=null keeps the last epoch
            metrics[f"{checkpoint.monitor}_best"] = float(checkpoint.best_model_score)
        for prefix, path in (("test", best_path), ("test_last", last_path)):
            with module.tested_as(prefix):
                metrics.update(trainer.test(module, datamodule=datamodule, ckpt_path=path,
                                            verbose=False, weights_only=True)[0])
        best = torch.load(best_path, map_location="cpu", weights_only=True)
        metrics["best_epoch"] = best["epoch"] + 1  # counted from 1, as the console counts
    else:  # fast_dev_run and runs without checkpointing: the weights in hand are the result
        metrics.update(trainer.test(module, datamodule=datamodule, verbose=False)[0])
    metrics["epochs"] = trainer.current_epoch
    metrics["global_step"] = trainer.global_step
    return {k: float(v) if isinstance(v, torch.Tensor) else v for k, v in metrics.items()}


def train(cfg: DictConfig, context: RunContext) -> dict:
    """One run of `cfg` in `context.run_dir`; returns its metrics."""
    rank_zero = distributed.is_rank_zero()  # DDP: every rank runs this; rank 0 alone writes
    console.quiet_known_warnings()
    check_run_settings(cfg)
    seen: dict = {}  # the trainer, once built: how far an interrupted run got
    with lock(context.run_dir, write=rank_zero):
        try:
            return _train(cfg, context, rank_zero, seen)
        except (KeyboardInterrupt, SystemExit) as e:
            raise _interrupted(e, context.run_dir, seen.get("trainer"), rank_zero) from e


def _interrupted(error: BaseException, run_dir: Path, trainer, rank_zero: bool) -> BaseException:
    """What to raise for a Ctrl-C or SIGTERM (recorded `interrupted` by RunRecord.recording),
    having said where the run stopped and how to continue it: the shell's status, 130 for
    SIGINT (Lightning's own exit after a Ctrl-C is 1), 143 for SIGTERM."""
    if read.run_status(run_dir) != "interrupted":
        return error
    if rank_zero:
        where = (f"at epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
                 if trainer is not None and trainer.max_epochs else "before training")
        console.print_interrupted(where, run_dir)
    sigterm = isinstance(error, SIGTERMException) or (
        isinstance(error, SystemExit) and error.code == SIGTERM_EXIT)
    return SystemExit(SIGTERM_EXIT if sigterm else SIGINT_EXIT)


def _train(cfg: DictConfig, context: RunContext, rank_zero: bool, seen: dict) -> dict:
    resume_from = None
    if cfg.get("resume"):
        if read.run_status(context.run_dir) in runs.ENDED:
            return resume.finished(context.run_dir)  # its metrics and checkpoints stay as they are
        # last.ckpt, or None: start in the same folder
        resume_from = (resume.prepare(context.run_dir) if rank_zero
                       else read.last_checkpoint(context.run_dir))
    record = _start_record(cfg, context, rank_zero)
    started = time.perf_counter()
    with record.recording():
        parts = assemble(cfg, context, resume_from=resume_from)
        trainer = seen["trainer"] = parts.trainer
        distributed.check_launch(trainer, multirun=context.multirun)
        scale = distributed.batch_scale(trainer, cfg.data.batch_size)
        record.update(**scale)
        for each in parts.extensions:
            each.start(RunStart(context, record, rank_zero))
        speed.check_precision(trainer.precision, trainer.strategy.root_device)
        metrics = _fit_and_time(cfg, parts, resume_from, started)
        end = _ended(cfg, context, parts, metrics, scale, rank_zero)
        for each in parts.extensions:
            each.finish(end)
        for each in parts.extensions:  # nested results (perclass.py), after the flat settings
            metrics.update(each.results())
        record.finish(metrics, status=end.status)
    if rank_zero:  # the run has ended whatever the work after it does
        _after(cfg.name, parts.extensions, end, metrics)
    return metrics


def _after(name: str, extensions: list[Extension], end: RunEnd, metrics: dict) -> None:
    """The work after the run (analyses), then its summary: its numbers, and where it is."""
    for each in extensions:
        each.after(end)
    summary = {k: metrics[k] for k in ("test/acc", "test_last/acc", "best_epoch", "epochs")
               if k in metrics}
    summary["time"] = f"{metrics['time/total_s']:.1f} s"
    places = {"run folder": end.run_dir}
    for each in extensions:
        places.update(each.places())
    console.print_summary(f"{name}: finished", summary, places)


def _start_record(cfg: DictConfig, context: RunContext, rank_zero: bool) -> RunRecord:
    """run.json, saying `running`, and the config printed."""
    threads = cpu_threads.apply(cfg.get("cpu_threads", "auto"))
    record = RunRecord(context.run_dir, write=rank_zero)
    record.start(seed=cfg.seed, extra={"name": cfg.name, "tags": list(cfg.tags),
                                        "overrides": list(context.overrides), **threads})
    if rank_zero:
        console.print_config(cfg, cfg.extras.print_config if "extras" in cfg else "auto",
                             dict(context.choices), context.overrides, context.multirun)
    return record


def _fit_and_time(cfg: DictConfig, parts: Parts, resume_from: Path | None,
                  started: float) -> dict:
    """fit_and_test's metrics, with the model's size and the run's time (torch.compile's own
    time too, part of time/total_s)."""
    compiled = speed.compile_seconds() if cfg.module.get("compile") else None
    metrics = fit_and_test(parts.trainer, parts.module, parts.datamodule, ckpt_path=resume_from)
    metrics.update(count_parameters(parts.model))
    metrics["time/total_s"] = time.perf_counter() - started
    if compiled is not None:
        metrics["time/compile_s"] = speed.compile_seconds() - compiled
    return metrics


def _ended(cfg: DictConfig, context: RunContext, parts: Parts, metrics: dict, scale: dict,
           rank_zero: bool) -> RunEnd:
    """The run as its extensions see it once tested: its settings, results and status."""
    settings = (hparams.settings(cfg, dict(context.choices), context.overrides)
                | count_parameters(parts.model) | {f"scale/{k}": v for k, v in scale.items()})
    # the results not logged as scalars during the run
    final = {k: metrics[k] for k in (f"{cfg.monitor}_best", "time/total_s", "time/compile_s")
             if k in metrics}
    status = next((s for s in (e.status() for e in parts.extensions) if s), "finished")
    return RunEnd(context, cfg.monitor, settings, metrics, status, parts.trainer, parts.module,
                  parts.datamodule, rank_zero, final)
