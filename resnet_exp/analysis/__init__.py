"""Post-hoc analyses of a trained network: why residual networks train where plain ones do not.

    lesion.py     Veit et al. 2016: accuracy with residual branches removed, one and k at a time
    landscape.py  Li et al. 2018: loss along filter-normalised random directions (1D and 2D)
    sharpness.py  the top eigenvalue of the loss Hessian, by power iteration on Hessian-vector
                  products (torch.func)
    cka.py        Kornblith et al. 2019: linear CKA between layers (minibatch, Nguyen et al. 2021)

Each is an `Analysis` (base.py) that conf/analysis/<name>.yaml names; `Analyses` runs the chosen
ones on a model in evaluation mode and a fixed subset of its test images: at the end of a run (the
`analysis` group: an extension of the run, resnet_exp/runs/extension.py), or on finished run
folders (`python -m resnet_exp.analyze`). Lesion and CKA see the model's parts only as it declares
them (`structure()`, resnet_exp/models/structure.py). docs/extending.md adds one.
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

from resnet_exp.analysis.base import Analysis
from resnet_exp.core.errors import UserError
from resnet_exp.runs import ANALYSIS_DIR, CHECKPOINT_DIR, TENSORBOARD_DIR
from resnet_exp.runs.extension import Extension, RunEnd

# The tag group of the figures in the run's TensorBoard: its Time Series page orders groups by
# the tags' first part, character by character, and opens the first two; "why" (what these
# analyses ask of a trained net) sorts after the curves' train/ and val/, "analysis" before them.
TAG_GROUP = "why"


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


class Analyses(Extension):
    """The analyses to run, by name (conf/analysis/: `analysis=all`, `analysis=lesion`, ...), on
    `images` test images (a fixed random subset). Results go to RUN_DIR/analysis/<name>.json and
    .png, and to the run's own TensorBoard run as images `why/<name>` (TAG_GROUP)."""

    def __init__(self, images: int = 500, **analyses: Analysis | None) -> None:
        self.images = images
        self.analyses = {name: a for name, a in analyses.items() if a is not None}
        if not self.analyses:
            raise UserError("analysis: none chosen; pick an option of conf/analysis/ "
                            "(e.g. analysis=all)")
        wrong = [name for name, a in self.analyses.items() if not isinstance(a, Analysis)]
        if wrong:
            raise UserError(f"analysis.{wrong[0]}: not an analysis (its _target_ must name a "
                            "subclass of resnet_exp.analysis.base.Analysis)")
        if images < 4:
            raise UserError(f"analysis.images={images}: CKA's estimator needs at least 4")

    def check(self, model) -> None:
        """Refuse, before any training, an analysis the model cannot have."""
        for name, analysis in self.analyses.items():
            missing = analysis.missing(model)
            if missing:
                raise UserError(f"{name}: {type(model).__name__} has no {missing} (none declared "
                                "by its structure(): resnet_exp/models/structure.py)")

    def after(self, end: RunEnd) -> None:
        """At the end of a run: its best checkpoint (or, without one, the weights in hand); a
        pruned trial is abandoned, with no use for them."""
        from resnet_exp.training import checkpoints

        if end.status != "finished":
            return
        best = end.run_dir / CHECKPOINT_DIR / "best.ckpt"
        if best.is_file():
            end.module.load_state_dict(checkpoints.load(best)["state_dict"])
        model = end.module.model.eval()
        self.write(end.run_dir, model, *test_subset(end.datamodule, self.images))

    def write(self, run_dir: Path, model, x, y, others=()) -> dict:
        """Each analysis of the run's `model` on (x, y), into RUN_DIR/analysis/ and the run's
        TensorBoard, with a progress bar; those that compare runs also against each of `others`
        ((run folder, model) pairs)."""
        from torch.utils.tensorboard import SummaryWriter

        from resnet_exp.core import figures

        self.check(model)
        out = run_dir / ANALYSIS_DIR
        out.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(str(run_dir / TENSORBOARD_DIR))
        done = {}
        try:
            for name, analysis in self.analyses.items():
                result = _timed(run_dir, name, analysis, model, x, y, others)
                (out / f"{name}.json").write_text(json.dumps(result, indent=1))
                fig = analysis.figure(result)
                if fig is not None:
                    fig.suptitle(figures.plain(f"{run_dir.name}: {name}"))
                    figures.save(fig, out / f"{name}.png", writer, f"{TAG_GROUP}/{name}")
                done[name] = result
        finally:
            writer.close()
        return done


def _timed(run_dir: Path, name: str, analysis: Analysis, model, x, y, others) -> dict:
    """`analysis`'s result with its time and image count, behind a progress bar on a terminal
    (piped output gets one line per analysis, not a bar's frames)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from resnet_exp.core import console

    started = time.perf_counter()
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console.console, transient=True,
                  disable=not console.console.is_terminal) as bar:
        task = bar.add_task(f"{run_dir.name}: {name}", total=analysis.cost(model, len(others)))
        result = analysis.run(model, x, y, others, partial(bar.advance, task))
    result["seconds"] = time.perf_counter() - started
    result["images"] = len(y)
    console.console.print(f"{run_dir.name}: {name} in {result['seconds']:.1f} s -> "
                          f"{run_dir / ANALYSIS_DIR / (name + '.json')}", markup=False)
    return result
