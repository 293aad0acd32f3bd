"""Hydra's Optuna sweeper (hydra-optuna-sweeper), ending cleanly when no trial completed and
proposing new points when it continues a study.

Its search ends by asking the study for the best trial, which Optuna answers with
`ValueError: Record does not exist` when every trial failed: a traceback instead of the sweep's
table. Here that case prints one line and the sweep ends as any other, with its table
(resnet_exp/runs/hydra_hooks.SweepSummary), the failed trials marked.

A study continued from its storage (`hydra.sweeper.storage=sqlite:///.../optuna.db`) got a
sampler seeded as the first sweep's was, still in its random start-up: it proposed trial 0's
exact parameters again. The sampler's generators are seeded here with `seed + the number of
trials the study has`: new points, and the same ones again for the same continuation.

conf/hparams_search/*.yaml select it; it lives under `hydra_plugins/` because Hydra loads
sweepers from that package only.
"""

from __future__ import annotations

import sys

from hydra_plugins.hydra_optuna_sweeper import optuna_sweeper


def reseed(sampler, seed: int) -> None:
    """Seed an Optuna sampler's generators (TPE: its own and its random start-up sampler's)."""
    import numpy as np

    for part in (sampler, getattr(sampler, "_random_sampler", None)):
        if part is not None and isinstance(getattr(part, "_rng", None), np.random.RandomState):
            part._rng = np.random.RandomState(seed)


class OptunaSweeper(optuna_sweeper.OptunaSweeper):
    _seed: int | None = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self._seed = config.hydra.sweeper.sampler.get("seed")  # the sampler came built

    def _trials_so_far(self) -> int:
        import optuna

        impl = self.sweeper
        if not impl.storage or not impl.study_name:
            return 0
        try:
            return len(optuna.load_study(study_name=impl.study_name, storage=impl.storage).trials)
        except KeyError:  # no such study yet: this sweep starts it
            return 0

    def sweep(self, arguments: list[str]) -> None:
        done = self._trials_so_far()
        if done and self._seed is not None:
            reseed(self.sweeper.sampler, self._seed + done)
        try:
            super().sweep(arguments)
        except ValueError as e:
            if "Record does not exist" not in str(e):
                raise
            print("error: no trial of the search completed: every one failed (their errors are "
                  "in the table below and in each job's run.json)", file=sys.stderr)
