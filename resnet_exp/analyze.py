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

Both a command and a config group. The command reads finished run folders, as eval and
reproduce do, and composes nothing new; it alone sees several runs at once (CKA between them).
The group (`analysis=all`, or one of them: conf/analysis/) runs the same `Analyses` when a run,
or each job of a study, ends, so a study's sweep leaves its answers beside its metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from omegaconf import OmegaConf

from resnet_exp.console import command
from resnet_exp.errors import UserError
from resnet_exp.runs import ANALYSIS_DIR, CHECKPOINT_DIR, TENSORBOARD_DIR, read
from resnet_exp.runs.context import RunContext
from resnet_exp.runs.replay import replay

ANALYSES = ("lesion", "landscape", "sharpness", "cka")


def test_subset(datamodule, images: int):
    """`images` images of the data module's test split, prepared as in its test: a fixed random
    subset (seed 0), the same for every run of a study. The split is often ordered by class,
    and its first N images would all be airplanes."""
    import torch

    datamodule.setup("test")
    split = datamodule.test_set
    chosen = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[:images]
    items = [split[int(i)] for i in chosen.sort().values]
    x = torch.stack([item[0] for item in items])
    y = torch.as_tensor([int(item[1]) for item in items])
    return datamodule.prepare_batch(x, y)


def trained(run_dir: Path, images: int, trust: bool = False):
    """(model in evaluation mode, images, labels) of a finished run, from its best checkpoint."""
    from resnet_exp import checkpoints
    from resnet_exp.train import assemble

    read.load_config(run_dir)  # one line when the folder is not a run
    ckpt = read.checkpoint_path(run_dir, "best")
    _, cfg = replay(run_dir, [], trust, output_dir=run_dir / ANALYSIS_DIR)
    parts = assemble(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]),
                     RunContext.of(cfg.hydra), testing=True)
    checkpoint = checkpoints.load(ckpt)
    checkpoints.check_compatible(parts.module, checkpoint, ckpt)
    parts.module.load_state_dict(checkpoint["state_dict"])
    return (parts.model.eval(), *test_subset(parts.datamodule, images))


@dataclass
class Analyses:
    """The analyses to run and their knobs: a run's `analysis` group at its end (conf/analysis/),
    or the flags of `python -m resnet_exp.analyze` on finished runs."""

    names: Sequence[str] = field(default_factory=lambda: list(ANALYSES))
    images: int = 500  # test images used (a fixed random subset)
    draws: int = 5  # lesion: random draws per k
    points: int = 51  # landscape: 1D points
    grid: int = 21  # landscape: 2D grid side
    span: float = 1.0  # landscape: -span..span
    iterations: int = 100  # sharpness: at most
    tol: float = 1e-3  # sharpness: relative change

    def __post_init__(self):
        unknown = [n for n in self.names if n not in ANALYSES]
        if unknown or not self.names:
            raise UserError(f"analyses {list(self.names)}: choose among {', '.join(ANALYSES)}")
        if self.images < 4:
            raise UserError(f"{self.images} images: CKA's estimator needs at least 4")

    def check(self, model) -> None:
        """Refuse, before any training, an analysis the model cannot have: one whose parts the
        model does not declare (`structure()`, resnet_exp/models/structure.py)."""
        from resnet_exp.analysis import cka, lesion

        needs = {"lesion": (lesion.blocks, "residual-style blocks to remove"),
                 "cka": (cka.layers, "blocks or stages to compare")}
        for name in self.names:
            parts, what = needs.get(name, (None, ""))
            if parts is not None and not parts(model):
                raise UserError(f"{name}: {type(model).__name__} has no {what} (none declared "
                                "by its structure(): resnet_exp/models/structure.py)")

    def cost(self, name: str, model, others: int) -> int:
        """How many steps (evaluations, Hessian-vector products, CKA rows) `name` takes."""
        from resnet_exp.analysis import cka, lesion

        return {"lesion": lambda: lesion.evaluations(model, self.draws),
                "landscape": lambda: self.points + self.grid ** 2,
                "sharpness": lambda: self.iterations,
                "cka": lambda: len(cka.layers(model)) * (1 + others)}[name]()

    def one(self, name: str, model, x, y, others=(), advance=lambda: None) -> dict:
        from resnet_exp.analysis import cka, landscape, lesion, sharpness

        if name == "lesion":
            result = lesion.lesion(model, x, y, draws=self.draws, advance=advance)
            single = [b["accuracy"] for b in result["blocks"]]
            return result | {"summary": {"accuracy": result["accuracy"],
                                         "lesion_one_block_mean": sum(single) / len(single),
                                         "lesion_one_block_min": min(single)}}
        if name == "landscape":
            result = landscape.landscape(model, x, y, self.points, self.grid, self.span,
                                         advance=advance)
            alphas, loss = result["alphas"], result["loss_1d"]

            def at(alpha: float) -> float:
                return loss[min(range(len(alphas)), key=lambda i: abs(alphas[i] - alpha))]

            # how far the loss climbs half-way out along the direction, both ways on average
            rise = (at(-self.span / 2) + at(self.span / 2)) / 2 - at(0.0)
            return result | {"summary": {"landscape_rise_at_half_span": rise}}
        if name == "sharpness":
            result = sharpness.sharpness(model, x, y, iterations=self.iterations, tol=self.tol,
                                         advance=advance)
            return result | {"summary": {"sharpness": result["eigenvalue"]}}
        matrices = {"self": cka.cka_matrix(model, model, x, advance=advance)}
        for other_dir, other in others:
            matrices[str(other_dir)] = cka.cka_matrix(model, other, x, advance=advance)
        own = matrices["self"]["cka"]
        adjacent = [own[i][i + 1] for i in range(len(own) - 1)]
        return {"matrices": matrices,
                "summary": {"cka_adjacent_mean": sum(adjacent) / max(len(adjacent), 1)}}

    def write(self, run_dir: Path, model, x, y, others=()) -> dict:
        """Each analysis of the run's `model` on (x, y), into RUN_DIR/analysis/ and the run's
        TensorBoard, with a progress bar; CKA also against each of `others` ((dir, model))."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
        from torch.utils.tensorboard import SummaryWriter

        from resnet_exp import console, figures

        self.check(model)
        out = run_dir / ANALYSIS_DIR
        out.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(str(run_dir / TENSORBOARD_DIR / ANALYSIS_DIR))
        done = {}
        columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        try:
            for name in self.names:
                started = time.perf_counter()
                # piped output gets the one line below per analysis, not a bar's frames
                with Progress(*columns, console=console.console, transient=True,
                              disable=not console.console.is_terminal) as bar:
                    task = bar.add_task(f"{run_dir.name}: {name}",
                                        total=self.cost(name, model, len(others)))
                    result = self.one(name, model, x, y, others, partial(bar.advance, task))
                result["seconds"] = time.perf_counter() - started
                result["images"] = len(y)
                (out / f"{name}.json").write_text(json.dumps(result, indent=1))
                fig = figure(name, result, f"{run_dir.name}: {name}")
                if fig is not None:
                    figures.save(fig, out / f"{name}.png", writer, f"analysis/{name}")
                done[name] = result
                console.console.print(f"{run_dir.name}: {name} in {result['seconds']:.1f} s "
                                      f"-> {out / (name + '.json')}", markup=False)
        finally:
            writer.close()
        return done

    def after_training(self, run_dir: Path, module, datamodule) -> dict:
        """At the end of a run: its best checkpoint (or, without one, the weights in hand)."""
        from resnet_exp import checkpoints

        best = run_dir / CHECKPOINT_DIR / "best.ckpt"
        if best.is_file():
            module.load_state_dict(checkpoints.load(best)["state_dict"])
        model = module.model.eval()
        return self.write(run_dir, model, *test_subset(datamodule, self.images))

    def __call__(self, run_dirs: list[Path], trust: bool = False) -> dict[Path, dict]:
        """Each finished run folder; CKA of the first against each other one too."""
        models = [(d, *trained(d, self.images, trust)) for d in run_dirs]
        for _, model, _, _ in models:  # every refusal before any result is written
            self.check(model)
        return {run_dir: self.write(run_dir, model, x, y,
                                    [(d, m) for d, m, _, _ in models[1:]] if i == 0 else [])
                for i, (run_dir, model, x, y) in enumerate(models)}


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


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resnet_exp.analyze",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    for name in ANALYSES:
        parser.add_argument(f"--{name}", action="store_true")
    knobs = Analyses()
    for knob, what in (("images", "test images used (a fixed random subset)"),
                       ("draws", "lesion: random draws per k"), ("points", "landscape: 1D points"),
                       ("grid", "landscape: 2D grid side"), ("span", "landscape: -span..span"),
                       ("iterations", "sharpness: at most"), ("tol", "sharpness: relative change")):
        default = getattr(knobs, knob)
        parser.add_argument(f"--{knob}", type=type(default), default=default, help=what)
    parser.add_argument("--trust", action="store_true",
                        help="accept _target_ entries outside the allow-list (runs/trust.py)")
    args = parser.parse_args(argv)
    names = [n for n in ANALYSES if getattr(args, n)] or list(ANALYSES)
    knobs = {k: getattr(args, k) for k in vars(knobs) if k != "names"}
    Analyses(names, **knobs)(args.run_dirs, args.trust)
    return 0


if __name__ == "__main__":
    sys.exit(main())
