"""`python -m resnet_exp.analyze RUN_DIR [RUN_DIR ...] [--lesion] [--landscape] [--sharpness]
[--cka] [--images N] [--<knob> VALUE] [key=value ...]`: why a trained network behaves as it
does (resnet_exp/analysis/). Overrides are eval's (data.root=...), and `analysis=<option>` with
`hydra.searchpath=[...]` runs an analysis of your own (docs/extending.md).

Each analysis reads the run's best checkpoint (weights_only) into the model its config builds,
and N images of its own test split (a fixed random subset, seed 0: the same images for every
run of a study), prepared as in its test. No flag: all of conf/analysis/all.yaml; its knobs are
the flags (--draws, --points, --grid, --span, --iterations, --tol).

    lesion     accuracy with each block's residual branch removed, and k random ones
    landscape  loss along 1 and 2 filter-normalised random directions (--points, --grid)
    sharpness  the top eigenvalue of the loss Hessian (power iteration, stop rule reported)
    cka        linear CKA between the blocks' outputs; with several runs, also between the
               first run and each other one (e.g. plain-56 and ResNet-56)

Results go to RUN_DIR/analysis/<name>.json and .png, and to TensorBoard as images of the run
(`why/<name>` in RUN_DIR/tensorboard/). Each JSON's "summary" reaches the report as analysis/<key>:
    python -m resnet_exp.report RUN_DIR... --metric analysis/lesion_one_block_mean \
        --metric analysis/sharpness --metric analysis/landscape_rise_at_half_span

Both a command and a config group. The command reads finished run folders, as eval and
reproduce do, and composes nothing new; it alone sees several runs at once (CKA between them).
The group (`analysis=all`, or one of them: conf/analysis/) runs the same `Analyses` when a run,
or each job of a study, ends, so a study's sweep leaves its answers beside its metrics.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from resnet_exp.core.console import command
from resnet_exp.runs import ANALYSIS_DIR


def trained(run_dir: Path, images: int, trust: bool = False, overrides: Sequence[str] = ()):
    """(model in evaluation mode, images, labels) of a finished run, from its best checkpoint;
    `overrides` as eval takes them (data.root=..., the config folders of hydra.searchpath)."""
    from resnet_exp.analysis import test_subset
    from resnet_exp.runs.load import load

    loaded = load(run_dir, overrides=list(overrides), trust=trust,
                  output_dir=run_dir / ANALYSIS_DIR)
    return (loaded.model, *test_subset(loaded.parts.datamodule, images))


def analyse(analyses, run_dirs: list[Path], trust: bool = False,
            overrides: Sequence[str] = ()) -> dict[Path, dict]:
    """Each finished run folder; those analyses that compare runs (CKA) also compare the first
    run with each other one. Every refusal comes before any result is written."""
    models = [(d, *trained(d, analyses.images, trust, overrides)) for d in run_dirs]
    for _, model, _, _ in models:
        analyses.check(model)
    return {run_dir: analyses.write(run_dir, model, x, y,
                                    [(d, m) for d, m, _, _ in models[1:]] if i == 0 else [])
            for i, (run_dir, model, x, y) in enumerate(models)}


def analyses_node(overrides: Sequence[str] = ()) -> DictConfig:
    """The analyses to offer and their knobs, with their defaults: conf/analysis/all.yaml, or the
    option an `analysis=...` override names (from a config folder of `hydra.searchpath` too)."""
    from resnet_exp.core import config

    own = [o for o in overrides if config.override_key(o).startswith(("analysis", "hydra."))]
    return config.compose(["analysis=all", *own]).analysis


def knobs(node: DictConfig) -> dict[str, tuple[str, str, object]]:
    """Each knob of each analysis in `node`: its flag (the knob's name, or `<analysis>-<knob>`
    where two analyses share one) -> (analysis, knob, default)."""
    flags: dict[str, tuple[str, str, object]] = {}
    for name, sub in node.items():
        for knob, value in (sub.items() if OmegaConf.is_dict(sub) else ()):
            if knob != "_target_":
                flags[f"{name}-{knob}" if knob in flags else knob] = (name, knob, value)
    return flags


@command
def main(argv: list[str] | None = None) -> int:
    from resnet_exp.train import build

    argv = sys.argv[1:] if argv is None else list(argv)
    # a sweep job's folder holds "=" too (0_residual=false,seed=1): a folder is a folder
    overrides = [a for a in argv if "=" in a and not a.startswith("-") and not Path(a).exists()]
    node = analyses_node(overrides)
    names = [name for name in node if OmegaConf.is_dict(node[name])]
    parser = argparse.ArgumentParser(prog="python -m resnet_exp.analyze",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    for name in names:
        parser.add_argument(f"--{name}", action="store_true", help=f"run {name} (no flag: all)")
    parser.add_argument("--images", type=int, default=node.images,
                        help="test images used (a fixed random subset)")
    flags = knobs(node)
    for flag, (name, _, default) in flags.items():
        parser.add_argument(f"--{flag}", type=type(default), default=default, help=name)
    parser.add_argument("--trust", action="store_true",
                        help="accept _target_ entries outside the allow-list (runs/trust.py)")
    args = parser.parse_args([a for a in argv if a not in overrides])
    chosen = [n for n in names if getattr(args, n)] or names
    with open_dict(node):
        node.images = args.images
        for flag, (name, knob, _) in flags.items():
            node[name][knob] = getattr(args, flag.replace("-", "_"))
        for name in set(names) - set(chosen):
            del node[name]
    analyse(build(node, "analysis"), args.run_dirs, args.trust, overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
