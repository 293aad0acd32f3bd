"""The end of a sweep: one table of its jobs, whichever launcher or sweeper ran them.

A Hydra callback (conf/hydra/default.yaml, `hydra.callbacks.sweep_summary`): Hydra calls
`on_multirun_end` in the process that started the sweep once every job has returned, including an
Optuna search with failed trials. It reads what the jobs left in their folders (run.json,
metrics.json, .hydra/overrides.yaml) through runs.py, so a job that ran on a SLURM node shows up
the same as a local one. A basic sweep whose job raised stops before this hook (Hydra re-raises
the job's error), so it prints no table; its folders still say which jobs failed.
"""

from __future__ import annotations

import math
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich.table import Table

from resnet_exp import runs

_STATUS_STYLE = {"finished": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}


def swept_keys(overrides: list[dict[str, str]]) -> list[str]:
    """The override keys whose value differs between jobs (all of them for a single job), in
    the order they first appear.

    >>> swept_keys([{"model": "resnet20", "seed": "1"}, {"model": "resnet20", "seed": "2"}])
    ['seed']
    """
    keys = list(dict.fromkeys(k for job in overrides for k in job))
    if len(overrides) < 2:
        return keys
    return [k for k in keys if len({job.get(k) for job in overrides}) > 1]


def _short(value: str) -> str:
    """An override value as a reader compares it: sampled floats to 4 significant digits.

    >>> _short("0.08558894657793088"), _short("resnet20"), _short("1")
    ('0.08559', 'resnet20', '1')
    """
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() or len(value) <= 6 else f"{number:.4g}"


def _value(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def sweep_table(sweep_dir: Path, monitor: str) -> Table:
    """Job folder (under `sweep_dir`, named in the title), status, swept values,
    `<monitor>_best` and test/acc of each job; the best job by `<monitor>_best` in bold."""
    sweep_dir = Path(sweep_dir)
    jobs = runs.find_runs(sweep_dir) if sweep_dir.is_dir() else []
    overrides = [dict(o.lstrip("+~").split("=", 1) for o in runs.read_overrides(job) if "=" in o)
                 for job in jobs]
    metrics = [runs.read_json(job / runs.METRICS_FILE) if (job / runs.METRICS_FILE).is_file()
               else {} for job in jobs]
    keys = swept_keys(overrides)
    objective = f"{monitor}_best"
    scores = [_value(m, objective) for m in metrics]
    best = max((i for i, s in enumerate(scores) if s is not None), key=scores.__getitem__,
               default=None)

    table = Table(title=f"{len(jobs)} jobs in {sweep_dir}", header_style="bold")
    table.add_column("folder", justify="right")
    table.add_column("status")
    for key in keys:  # fold long names (optimizer.weight_decay) rather than cut them
        table.add_column(key, overflow="fold")
    table.add_column(objective, justify="right", overflow="fold")
    table.add_column("test/acc", justify="right", overflow="fold")
    for i, job in enumerate(jobs):
        status = runs.run_status(job) or "no run.json"
        test_acc = _value(metrics[i], "test/acc")
        table.add_row(
            str(job.relative_to(sweep_dir)),
            f"[{_STATUS_STYLE.get(status, 'red')}]{status}[/]",
            *(_short(overrides[i].get(k, "")) for k in keys),
            "" if scores[i] is None else f"{scores[i]:.4f}",
            "" if test_acc is None else f"{test_acc:.4f}",
            style="bold" if i == best else None,
        )
    return table


class SweepSummary(Callback):
    """Prints `sweep_table` when a multirun ends."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        # The Optuna sweeper opens its study in <sweep>/optuna.db before any job has created
        # the folder (sqlite cannot create the folder of its file).
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from resnet_exp.console import console

        console.print(sweep_table(Path(config.hydra.sweep.dir), config.get("monitor", "val/acc")))
