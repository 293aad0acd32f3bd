"""`make test-combos`: each cell of the matrix (matrix.py) runs one epoch of a few batches and
must finish with its metrics, each chosen logger's files and no traceback from any process; a
killed cell, resumed, must end with its uninterrupted twin's metrics.

A cell runs in this process where it can: `resnet_exp.run`, or the command's own entry point
for a sweep under Hydra's basic launcher and for `resume=`. It starts `python -m resnet_exp`
where the command starts processes of its own (DDP's ranks, joblib's workers) and for the run a
SIGTERM ends, which must be a process of its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import signal_at
from conftest import TESTS_ON_PATH, job_dirs, run_cli

import resnet_exp
from combos import checks, matrix, shrink, tree

TIMEOUT = 300
SIGTERM_STATUS = 143  # as a shell reports a run that SIGTERM ended (callbacks/guards.py)
# A sweep rerun with resume=true must find its job's folder under the same name: the signal's
# settings change between the attempts, so they stay out of it, as resume does
# (conf/hydra/default.yaml's exclude_keys, which this list replaces).
UNNAMED = ["resume", "name", "tags", "extras.print_config", *(
    f"callbacks.signal_at.{k}" for k in ("_target_", "signal", "epoch", "batch", "seed",
                                         "only_seed"))]
def _cost(cell: matrix.Cell) -> int:
    """About how many interpreters a cell starts: the slowest cells first, so that two pytest
    workers end together instead of one finishing a long cell alone."""
    return (2 * (cell.trainer == "ddp") + (cell.launcher == "joblib")
            + 2 * (cell.resume == "killed"))


# Each known failure (matrix.KNOWN) expected to fail; not run by default: each would cost minutes
# (a hang to the timeout, a 120 s grace), and `--runxfail` runs them to see whether one is fixed.
def _marks(cell: matrix.Cell) -> tuple:
    if cell.known:
        return (pytest.mark.xfail(run=False, strict=True, reason=cell.known),)
    return tuple(pytest.mark.xfail(strict=False, reason=reason)
                 for reason, (row, model) in matrix.INTERMITTENT.items()
                 if model in (None, cell.model)
                 and all(cell.values[k] == v for k, v in row.items()))


CELLS = [pytest.param(cell, id=cell.id, marks=_marks(cell))
         for cell in sorted(matrix.cells(), key=_cost, reverse=True)]


def _in_workers(cell: matrix.Cell) -> bool:
    """Whether the cell's run starts processes of its own: DDP ranks, a launcher's workers."""
    return cell.trainer == "ddp" or cell.launcher not in (matrix.NO_LAUNCHER, "basic")


def _command(cell: matrix.Cell, args: list[str], cwd: Path) -> list[str]:
    if cell.launcher == matrix.NO_LAUNCHER:
        return [*args, f"hydra.run.dir={cwd / 'run'}"]
    return ["-m", f"hydra.sweep.dir={cwd / 'sweep'}", *args, *shrink.launcher(cell)]


def _run_dirs(cell: matrix.Cell, cwd: Path) -> list[Path]:
    """The run, or the sweep's jobs (shrink.launcher: one)."""
    if cell.launcher == matrix.NO_LAUNCHER:
        return [cwd / "run"]
    return job_dirs(cwd / "sweep")


def _here(args: list[str], monkeypatch, capfd) -> dict[str, str]:
    """`python -m resnet_exp ARGS` in this process, through the command's own entry point
    (`resume=` becomes the run's own command line there); returns what it printed."""
    from resnet_exp.__main__ import cli

    monkeypatch.setattr(sys, "argv", ["resnet_exp", *args])
    cli()
    return dict(zip(("stdout", "stderr"), capfd.readouterr(), strict=True))


def _there(args: list[str], cwd: Path, status: int = 0) -> dict[str, str]:
    """`python -m resnet_exp ARGS` in a process of its own (tests/ on its path: signal_at)."""
    result = run_cli(args, cwd, timeout=TIMEOUT, env=TESTS_ON_PATH)
    assert result.returncode == status, (result.stdout[-2000:], result.stderr[-4000:])
    return {"stdout": result.stdout, "stderr": result.stderr}


def _signal(target: str, epoch: int, add: bool = True) -> list[str]:
    """tests/signal_at.py's callback sending SIGTERM at KILL_AT (epoch -1: never)."""
    overrides = signal_at.overrides("SIGTERM", epoch, shrink.KILL_AT["batch"], add)
    return [o.replace("signal_at.SignalAt", f"signal_at.{target}") for o in overrides]


def _killed(cell: matrix.Cell, args: list[str], cwd: Path, monkeypatch, capfd) -> dict:
    """The cell ended by SIGTERM in its first epoch, then resumed: `resume=RUN_DIR` for a run,
    the sweep again with resume=true for a sweep. The signal goes to the run's own process (to
    each DDP rank: a scheduler signals every task), or to the sweep's where a launcher runs the
    job in a worker (ForwardSignals passes it on)."""
    epoch = shrink.KILL_AT["epoch"]
    if cell.launcher == matrix.NO_LAUNCHER:
        first = [*_command(cell, args, cwd), *_signal("SignalAt", epoch)]
        again = [f"resume={cwd / 'run'}", "--trust", *_signal("SignalAt", -1, add=False)]
    else:
        command = [*_command(cell, args, cwd), "resume=true",
                   f"hydra.job.config.override_dirname.exclude_keys=[{','.join(UNNAMED)}]"]
        target, extra = "SignalAt", []
        if cell.launcher != "basic":  # the job runs in a worker: the sweep's process is signalled
            target = "SignalParentAt"
            extra = ["+callbacks.signal_at.seed=${seed}", "+callbacks.signal_at.only_seed=${seed}"]
        first = [*command, *_signal(target, epoch), *extra]
        again = [*command, *_signal(target, -1), *extra]
    texts = {f"killed {k}": v for k, v in _there(first, cwd, SIGTERM_STATUS).items()}
    assert [checks.status(run) for run in _run_dirs(cell, cwd)] == ["interrupted"] * len(
        _run_dirs(cell, cwd))
    resumed = _there(again, cwd) if _in_workers(cell) else _here(again, monkeypatch, capfd)
    return texts | {f"resumed {k}": v for k, v in resumed.items()}


def _twin(cell: matrix.Cell, args: list[str], cwd: Path, capfd) -> dict:
    """The killed cell's uninterrupted equivalent, checked as a cell: the same options in one
    run, DDP's ranks in processes of their own."""
    twin = cwd / "twin"
    alone = [*args, f"hydra.run.dir={twin}"]
    if cell.trainer == "ddp":
        texts = _there(alone, cwd)
    else:
        resnet_exp.run(alone)
        texts = dict(zip(("stdout", "stderr"), capfd.readouterr(), strict=True))
    checks.no_traceback({f"twin {k}": v for k, v in texts.items()} | checks.outputs(twin))
    return checks.finished(twin, shrink.loggers(cell), cwd)


@pytest.mark.parametrize("cell", CELLS)
def test_cell(cell, data_args, tmp_path, monkeypatch, capfd):
    if tree.node("data", cell.data).get("root") and cell.data not in data_args:
        pytest.skip(f"data={cell.data}: no stand-in files here (conftest.py)")
    args = shrink.overrides(cell, data_args, tmp_path)
    monkeypatch.chdir(tmp_path)  # what a run writes relative to where it starts
    if cell.resume == "killed":
        texts = _killed(cell, args, tmp_path, monkeypatch, capfd)
    elif _in_workers(cell):
        texts = _there(_command(cell, args, tmp_path), tmp_path)
    elif cell.launcher == matrix.NO_LAUNCHER:
        resnet_exp.run(args, tmp_path / "run")
        texts = dict(zip(("stdout", "stderr"), capfd.readouterr(), strict=True))
    else:
        texts = _here(_command(cell, args, tmp_path), monkeypatch, capfd)
    folder = tmp_path / ("run" if cell.launcher == matrix.NO_LAUNCHER else "sweep")
    checks.no_traceback(texts | checks.outputs(folder))
    metrics = [checks.finished(run, shrink.loggers(cell), tmp_path)
               for run in _run_dirs(cell, tmp_path)]
    if cell.resume == "killed":
        twin = _twin(cell, args, tmp_path, capfd)
        assert checks.comparable(metrics[0]) == checks.comparable(twin)
