"""Shared fixtures: composing the real config tree, running the real CLI in a process of its own
(forked from a warm interpreter: tests/warm_cli.py), and one finished run that every test
reading a run folder shares (`smoke_run`, read-only: a test that writes into a run takes
`smoke_run_copy`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import warm_cli
from hydra.core.global_hydra import GlobalHydra

from resnet_exp.config import CONF_DIR

ROOT = Path(__file__).resolve().parents[1]
CONF = CONF_DIR  # the tree the package reads
SHARED = ROOT.parent / "shared"
# A short deterministic run with every callback (figures, per-class results, gradient flow),
# one thread: the same float sums in the run and in the tests that evaluate it in-process.
SMOKE_RUN = ["trainer=smoke", "trainer.max_epochs=2", "deterministic=true", "callbacks=study"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
# For the runs that load a test's own callback (tests/signal_at.py, tests/prune_trials.py).
TESTS_ON_PATH = {"PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
# A 2 x 2 sweep: VGG08 without and with shortcuts, two seeds each (the report's configurations).
SMOKE_SWEEP = ["-m", "model=vgg08", "model.residual=false,true", "seed=1,2", "trainer=smoke",
               "callbacks=study"]


def compose_config(overrides: list[str], output_dir: Path):
    """The config `python -m resnet_exp <overrides>` would run, with its hydra node set so that
    `${hydra:...}` interpolations resolve: what resume, reproduce and eval compose too."""
    from resnet_exp.config import compose

    return compose(overrides, output_dir)


def finished_run(cwd: Path, args: list[str]) -> Path:
    """`python -m resnet_exp ARGS` into cwd/run, which must finish."""
    result = run_cli([*args, "hydra.run.dir=run"], cwd, timeout=300, new_interpreter=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd / "run"


def made_once(tmp_path_factory, name: str, make) -> Path:
    """`make(folder)` once per test session, whatever the number of pytest-xdist workers: the
    first worker to get here makes it, under a file lock, the others wait and share it."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker has its own folder below this one
        root = root.parent
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session", autouse=True)
def one_thread_per_worker():
    """Under pytest-xdist (a worker per core), in-process training takes one intra-op thread:
    two workers' OpenMP threads spinning for each other's cores slow both many times over."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """One finished run (SMOKE_RUN) for every test that only reads a run folder."""
    return made_once(tmp_path_factory, "smoke_run",
                     lambda cwd: finished_run(cwd, SMOKE_RUN)) / "run"


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory) -> Path:
    """One finished sweep (SMOKE_SWEEP: 4 jobs) for every test that only reads a sweep folder."""

    def sweep(cwd: Path) -> None:
        result = run_cli([*SMOKE_SWEEP, "hydra.sweep.dir=sweep"], cwd, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        (cwd / "sweep.stdout").write_text(result.stdout)

    return made_once(tmp_path_factory, "smoke_sweep", sweep) / "sweep"


@pytest.fixture
def smoke_run_copy(smoke_run, tmp_path) -> Path:
    """A copy of `smoke_run` of the test's own, to write into, move, damage or resume."""
    copy = tmp_path / "run"
    shutil.copytree(smoke_run, copy)
    return copy


@pytest.fixture
def compose_cfg(tmp_path):
    yield lambda *overrides: compose_config(list(overrides), tmp_path)
    GlobalHydra.instance().clear()


def run_cli(args: list[str], cwd: Path, timeout: float = 600, env: dict | None = None,
            new_interpreter: bool = False, module: str = "resnet_exp"):
    """`python -m resnet_exp ARGS` as a user runs it, in `cwd` (runs land in cwd/outputs), from a
    warm interpreter (tests/warm_cli.py: a fork with the imports done) unless `new_interpreter`,
    which the tests of what a new interpreter prints take, and those of commands answered before
    torch loads (help, refusals): for them a new interpreter is the cheaper start.
    One intra-op thread unless `env` says otherwise: the suite runs a process per core (xdist),
    and OpenMP threads that spin for a core another process holds made a tiny run 20x slower;
    and runs that are compared (a reproduction, a resume and its twin) need the same float sums."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0", **ONE_THREAD,
           **(env or {})}
    if not new_interpreter:
        return warm_cli.run(module, args, cwd, env, timeout)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def job_dir(sweep: Path, num: int) -> Path:
    """Job `num`'s folder in a sweep: `<num>_<overrides>` (conf/hydra/default.yaml)."""
    (folder,) = [p for p in sweep.iterdir() if p.is_dir() and p.name.split("_")[0] == str(num)]
    return folder


def job_dirs(sweep: Path) -> list[Path]:
    """A sweep's job folders, in job order."""
    jobs = [p for p in sweep.iterdir() if p.is_dir() and p.name.split("_")[0].isdigit()]
    return sorted(jobs, key=lambda p: int(p.name.split("_")[0]))


def single_run_dir(cwd: Path) -> Path:
    runs = sorted((cwd / "outputs" / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]
