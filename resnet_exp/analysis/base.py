"""What an analysis is to the run and to `python -m resnet_exp.analyze`: an object chosen by config
(conf/analysis/<name>.yaml names its class and knobs) that says what it needs of a model, how many
steps it takes, its result with a "summary" the report reads, and its figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


class Analysis:
    def missing(self, model) -> str | None:
        """What the model lacks for this analysis (e.g. "residual-style blocks to remove"), as
        declared by its `structure()` (resnet_exp/models/structure.py); None when it can run."""
        return None

    def cost(self, model, others: int = 0) -> int:
        """How many steps `run` takes (a progress bar's total); `others`: runs compared with."""
        raise NotImplementedError

    def run(self, model, x, y, others: Sequence = (),
            advance: Callable[[], object] = lambda: None) -> dict:
        """The result on images `x` with labels `y`, JSON-ready, with a "summary" of numbers
        (the report's analysis/<key> columns); `advance` after each step; `others`: (run folder,
        model) pairs to compare with, for the analyses that compare runs."""
        raise NotImplementedError

    def figure(self, result: dict):
        """A matplotlib figure of `result`, or None."""
        return None
