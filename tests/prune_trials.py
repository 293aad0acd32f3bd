"""A test's own Optuna pruner: it prunes the trials whose numbers it is given, at their first
report, so that a test of pruning never depends on which values a short training happens to
reach. (The test puts tests/ on PYTHONPATH.)

    hydra.sweeper.pruner._target_=prune_trials.PruneTrials +hydra.sweeper.pruner.numbers=[1]
"""

from __future__ import annotations

from optuna.pruners import BasePruner


class PruneTrials(BasePruner):
    def __init__(self, numbers: list[int]) -> None:
        self.numbers = set(numbers)

    def prune(self, study, trial) -> bool:
        return trial.number in self.numbers
