"""`python -m resnet_exp.analyze RUN_DIR [RUN_DIR ...] [--lesion] [--landscape] [--sharpness]
[--cka] [--images N]`: why a trained network behaves as it does (resnet_exp/analysis/).

Each analysis reads the run's best checkpoint (weights_only) into the model its config builds,
and N images of its own test split (a fixed random subset, seed 0: the same images for every
run of a study), prepared as in its test. No flag: all four.

    lesion     accuracy with each block's residual branch removed, and k random ones
    landscape  loss along 1 and 2 filter-normalised random directions (--points, --grid)
    sharpness  the top eigenvalue of the loss Hessian (power iteration, stop rule reported)
    cka        linear CKA between the blocks' outputs; with several runs, also between the
               first run and each other one (e.g. plain-56 and ResNet-56)

Results go to RUN_DIR/analysis/<name>.json and .png, and to TensorBoard as images of the run
(RUN_DIR/tensorboard/analysis). Each JSON's "summary" reaches the report as analysis/<key>:
    python -m resnet_exp.report RUN_DIR... --metric analysis/lesion_one_block_mean \
        --metric analysis/sharpness --metric analysis/landscape_rise_at_half_span

A standalone command rather than a Hydra config group: it reads finished run folders, as eval
and reproduce do, and composes nothing new.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from resnet_exp.errors import UserError, command
from resnet_exp.runs import read
from resnet_exp.runs.replay import replay

ANALYSES = ("lesion", "landscape", "sharpness", "cka")


def trained(run_dir: Path, images: int, trust: bool = False):
    """(model in evaluation mode, images, labels) of a finished run."""
    import torch

    from resnet_exp import checkpoints
    from resnet_exp.train import assemble

    read.load_config(run_dir)  # one line when the folder is not a run
    ckpt = read.checkpoint_path(run_dir, "best")
    _, cfg = replay(run_dir, [], trust, output_dir=run_dir / "analysis")
    parts = assemble(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), testing=True)
    checkpoint = checkpoints.load(ckpt)
    checkpoints.check_compatible(parts.module, checkpoint, ckpt)
    parts.module.load_state_dict(checkpoint["state_dict"])
    data = parts.datamodule
    data.setup("test")
    # a fixed random subset (seed 0), the same for every run of a study: the test split is often
    # ordered by class, and its first N images would all be airplanes
    split = data.test_set
    chosen = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[:images]
    items = [split[int(i)] for i in chosen.sort().values]
    x = torch.stack([item[0] for item in items])
    y = torch.as_tensor([int(item[1]) for item in items])
    x, y = data.prepare_batch(x, y)
    return parts.model.eval(), x, y


def run(name: str, model, x, y, args, others=()) -> dict:
    from resnet_exp.analysis import cka, landscape, lesion, sharpness

    if name == "lesion":
        if not lesion.blocks(model):
            raise UserError(f"--lesion: {type(model).__name__} has no residual-style blocks "
                            "(ResNet or VGG blocks) to remove")
        result = lesion.lesion(model, x, y, draws=args.draws)
        single = [b["accuracy"] for b in result["blocks"]]
        return result | {"summary": {"accuracy": result["accuracy"],
                                     "lesion_one_block_mean": sum(single) / len(single),
                                     "lesion_one_block_min": min(single)}}
    if name == "landscape":
        result = landscape.landscape(model, x, y, args.points, args.grid, args.span)
        alphas, loss = result["alphas"], result["loss_1d"]

        def at(alpha: float) -> float:
            return loss[min(range(len(alphas)), key=lambda i: abs(alphas[i] - alpha))]

        # how far the loss climbs half-way out along the direction, both ways on average
        rise = (at(-args.span / 2) + at(args.span / 2)) / 2 - at(0.0)
        return result | {"summary": {"landscape_rise_at_half_span": rise}}
    if name == "sharpness":
        result = sharpness.sharpness(model, x, y, iterations=args.iterations, tol=args.tol)
        return result | {"summary": {"sharpness": result["eigenvalue"]}}
    matrices = {"self": cka.cka_matrix(model, model, x)}
    for other_dir, other in others:
        matrices[str(other_dir)] = cka.cka_matrix(model, other, x)
    own = matrices["self"]["cka"]
    adjacent = [own[i][i + 1] for i in range(len(own) - 1)]
    return {"matrices": matrices,
            "summary": {"cka_adjacent_mean": sum(adjacent) / max(len(adjacent), 1)}}


def figure(name: str, result: dict, title: str):
    from resnet_exp import figures

    if name == "lesion":
        fig, axes = figures.new_figure(10, 3.5, ncols=2)
        a, b = axes[0]
        a.plot([r["accuracy"] for r in result["blocks"]], "o-")
        a.axhline(result["accuracy"], color="gray", linestyle="--")
        a.set(xlabel="block removed", ylabel="test accuracy")
        b.errorbar([r["k"] for r in result["k"]], [r["mean"] for r in result["k"]],
                   [r["std"] for r in result["k"]], marker="o")
        b.set(xlabel="blocks removed at random (k)", ylabel="test accuracy")
    elif name == "landscape":
        fig, axes = figures.new_figure(10, 4, ncols=2)
        a, b = axes[0]
        a.plot(result["alphas"], result["loss_1d"])
        a.set(xlabel="alpha (filter-normalised direction)", ylabel="loss")
        # loss_2d[i][j] is at (alpha_i, beta_j): rows are alpha, contour's y axis
        contour = b.contour(result["grid"], result["grid"], result["loss_2d"], levels=20)
        b.set(xlabel="beta (second direction)", ylabel="alpha")
        fig.colorbar(contour, ax=b, label="loss")
    elif name == "cka":
        matrices = result["matrices"]
        fig, axes = figures.new_figure(4 * len(matrices), 4, ncols=len(matrices))
        for ax, (label, matrix) in zip(axes[0], matrices.items(), strict=True):
            image = ax.imshow(matrix["cka"], vmin=0, vmax=1, origin="lower", cmap="magma")
            ax.set(title=figures.plain(label if label == "self" else Path(label).name),
                   xlabel="layer", ylabel="layer")
        fig.colorbar(image, ax=axes[0][-1])
    else:
        return None
    fig.suptitle(figures.plain(title))
    return fig


def analyze(run_dirs: list[Path], names: tuple[str, ...], args) -> dict[Path, dict]:
    from torch.utils.tensorboard import SummaryWriter

    from resnet_exp import console, figures

    models = [(d, *trained(d, args.images, args.trust)) for d in run_dirs]
    done: dict[Path, dict] = {}
    for i, (run_dir, model, x, y) in enumerate(models):
        out = run_dir / "analysis"
        out.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(str(run_dir / "tensorboard" / "analysis"))
        done[run_dir] = {}
        for name in names:
            started = time.perf_counter()
            others = [(d, m) for d, m, _, _ in models if d != run_dir] if i == 0 else []
            result = run(name, model, x, y, args, others)
            result["seconds"] = time.perf_counter() - started
            result["images"] = len(y)
            (out / f"{name}.json").write_text(json.dumps(result, indent=1))
            fig = figure(name, result, f"{run_dir.name}: {name}")
            if fig is not None:
                figures.save(fig, out / f"{name}.png", writer, f"analysis/{name}")
            done[run_dir][name] = result
            console.console.print(f"{run_dir.name}: {name} in {result['seconds']:.1f} s "
                                  f"-> {out / (name + '.json')}", markup=False)
        writer.close()
    return done


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resnet_exp.analyze",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    for name in ANALYSES:
        parser.add_argument(f"--{name}", action="store_true")
    parser.add_argument("--images", type=int, default=500,
                        help="test images used (a fixed random subset)")
    parser.add_argument("--draws", type=int, default=5, help="lesion: random draws per k")
    parser.add_argument("--points", type=int, default=51, help="landscape: 1D points")
    parser.add_argument("--grid", type=int, default=21, help="landscape: 2D grid side")
    parser.add_argument("--span", type=float, default=1.0, help="landscape: -span..span")
    parser.add_argument("--iterations", type=int, default=100, help="sharpness: at most")
    parser.add_argument("--tol", type=float, default=1e-3, help="sharpness: relative change")
    parser.add_argument("--trust", action="store_true",
                        help="accept _target_ entries outside the allow-list (runs/trust.py)")
    args = parser.parse_args(argv)
    if args.images < 4:
        raise UserError(f"--images {args.images}: CKA's estimator needs at least 4 images")
    names = tuple(n for n in ANALYSES if getattr(args, n)) or ANALYSES
    analyze(args.run_dirs, names, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
