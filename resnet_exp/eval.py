"""`python -m resnet_exp.eval RUN_DIR [--last] [--trust] [overrides]`: test a run's checkpoint.

Tests the best checkpoint (`--last`: the last one) on the run's own test set, or on another with
overrides such as `data=cifar10` or `trainer.limit_test_batches=1.0`, into a folder of its own,
`RUN_DIR/eval/<date>_<time>[_<data>]/`: metrics.json with the keys of the run's own test
(`test/*`, `test_last/*` with --last), run.json, .hydra/, tensorboard/ and the figures of the
run's test callbacks. On its own test set it gives exactly the metrics the run recorded.

The run's config is rebuilt from its saved overrides (resume.py: allow-list, drift warning);
the checkpoint is read with weights_only=True and must fit the model the config builds.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

from resnet_exp import resume, runs
from resnet_exp.errors import UserError


def output_dir(run_dir: Path, overrides: list[str]) -> Path:
    data = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == "data"]
    name = datetime.now().strftime("%Y-%m-%d_%H-%M-%S") + (f"_{data[-1]}" if data else "")
    return Path(run_dir) / "eval" / name


def evaluate(run_dir: Path, overrides: list[str], last: bool = False,
             trust: bool = False) -> tuple[dict, Path]:
    """Test the run's best (or last) checkpoint; returns the metrics and the eval folder."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from resnet_exp import checkpoints
    from resnet_exp.train import build, check_input_shape

    run_dir = Path(run_dir)
    runs.load_config(run_dir)  # a clear message when the folder is not a run
    ckpt = runs.checkpoint_path(run_dir, "last" if last else "best")
    out = output_dir(run_dir, overrides)
    replayed, cfg = resume.load_run(run_dir, overrides, trust, output_dir=out)
    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    record = runs.RunRecord(out)
    record.start(seed=cfg.seed, extra={"evaluates": str(run_dir.resolve()), "checkpoint": str(ckpt),
                                        "overrides": replayed})
    with record.recording():
        (out / runs.CONFIG_FILE).parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(task, out / runs.CONFIG_FILE)
        OmegaConf.save(OmegaConf.create(replayed), out / runs.OVERRIDES_FILE)
        pl.seed_everything(cfg.seed, workers=True)
        datamodule = build(cfg.data, "data")
        model = build(cfg.model, "model")
        check_input_shape(model, (cfg.data.in_channels, cfg.data.image_size,
                                  cfg.data.image_size), "the run's model and this data")
        module = build(cfg.module, "module", model=model,
                       optimizer=build(cfg.optimizer, "optimizer"))
        checkpoint = checkpoints.load(ckpt)
        checkpoints.check_compatible(module, checkpoint, ckpt)
        module.load_state_dict(checkpoint["state_dict"])
        module.test_prefix = "test_last" if last else "test"
        # the run's callbacks draw the same test figures; checkpointing has nothing to save
        callbacks = [c for c in (build(node, "callbacks")
                                 for node in (cfg.get("callbacks") or {}).values() if node)
                     if not isinstance(c, ModelCheckpoint)]
        loggers = [build(lg, "logger") for lg in (cfg.get("logger") or {}).values() if lg]
        trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
        metrics = dict(trainer.test(module, datamodule=datamodule, verbose=False)[0])
        for callback in trainer.callbacks:
            metrics.update(getattr(callback, "run_metrics", None) or {})
        metrics["checkpoint_epoch"] = checkpoint.get("epoch")
        record.finish(metrics)
    return metrics, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m resnet_exp.eval",
        description="Test a run's best (or last) checkpoint into RUN_DIR/eval/<date>_<time>/.")
    parser.add_argument("run_dir", type=Path, help="the run folder")
    parser.add_argument("overrides", nargs="*",
                        help="config overrides, e.g. data=cifar10 trainer.limit_test_batches=1.0")
    parser.add_argument("--last", action="store_true", help="the last checkpoint, not the best")
    parser.add_argument("--trust", action="store_true",
                        help="accept _target_ entries outside the allow-list (trust.py)")
    args = parser.parse_intermixed_args(argv)
    try:
        metrics, out = evaluate(args.run_dir, args.overrides, last=args.last, trust=args.trust)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from resnet_exp import console

    rows = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    console.print_summary(f"{args.run_dir}: {'last' if args.last else 'best'} checkpoint", rows)
    print(f"eval folder: {out}")  # whole, where a table cell would cut it
    return 0


if __name__ == "__main__":
    sys.exit(main())
