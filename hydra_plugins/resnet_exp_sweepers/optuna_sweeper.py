"""Hydra's Optuna sweeper (hydra-optuna-sweeper), ending cleanly when no trial completed.

Its search ends by asking the study for the best trial, which Optuna answers with
`ValueError: Record does not exist` when every trial failed: a traceback instead of the sweep's
table. Here that case prints one line and the sweep ends as any other, with its table
(resnet_exp/runs/hydra_hooks.SweepSummary), the failed trials marked. conf/hparams_search/*.yaml
select it; it lives under `hydra_plugins/` because Hydra loads sweepers from that package only.
"""

from __future__ import annotations

import sys

from hydra_plugins.hydra_optuna_sweeper import optuna_sweeper


class OptunaSweeper(optuna_sweeper.OptunaSweeper):
    def sweep(self, arguments: list[str]) -> None:
        try:
            super().sweep(arguments)
        except ValueError as e:
            if "Record does not exist" not in str(e):
                raise
            print("error: no trial of the search completed: every one failed (their errors are "
                  "in the table below and in each job's run.json)", file=sys.stderr)
