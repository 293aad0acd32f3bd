"""Shared fixtures: composing the real config tree, running a job in this process (the Python
API, `resnet_exp.run`) or the real CLI in a process of its own, dry sweeps through Hydra's own
sweeper, and one finished run that every test reading a run folder shares (`smoke_run`,
read-only: a test that writes into a run takes `smoke_run_copy`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from unittest import mock

import pytest
from hydra.core.global_hydra import GlobalHydra

from resnet_exp.core.config import CONF_DIR

ROOT = Path(__file__).resolve().parents[1]
CONF = CONF_DIR  # the tree the package reads
SHARED = ROOT.parent / "shared"
# A short deterministic run with every callback (figures, per-class results, gradient flow),
# one thread: the same float sums in the run and in the tests that evaluate it in-process.
SMOKE_RUN = ["trainer=smoke", "trainer.max_epochs=2", "deterministic=true", "callbacks=study"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
# Three smoke epochs of ResNet-20 on the digits, 9 steps: enough to learn well above chance.
DIGITS_RUN = ["trainer=smoke", "callbacks=lean", "trainer.max_epochs=3"]
# For the runs that load a test's own callback (tests/signal_at.py, tests/prune_trials.py).
TESTS_ON_PATH = {"PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
# A 2 x 2 sweep: VGG08 without and with shortcuts, two seeds each (the report's configurations).
SMOKE_SWEEP = ["-m", "model=vgg08", "model.residual=false,true", "seed=1,2", "trainer=smoke",
               "callbacks=study"]
# The combination matrix (tests/combos/: ~120 runs, minutes) is collected only when named, as
# `make test-combos` does: `pytest tests/combos`.
collect_ignore = ["combos"]

# A suite started in the background (`make test &`, nohup, some CI runners) inherits SIGINT
# ignored, and so would every Python it starts, which then never sees a Ctrl-C: the tests that
# send one expect what a terminal gives. A handler (not SIG_IGN) resets to the default at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def compose_config(overrides: list[str], output_dir: Path):
    """The config `python -m resnet_exp <overrides>` would run, with its hydra node set so that
    `${hydra:...}` interpolations resolve: what resume, reproduce and eval compose too."""
    from resnet_exp.core.config import compose

    return compose(overrides, output_dir)


def finished_run(cwd: Path, args: list[str]) -> Path:
    """`resnet_exp.run(ARGS)` into cwd/run, in this process; the run must finish."""
    import resnet_exp

    run = resnet_exp.run(args, output_dir=cwd / "run")
    assert run.status == "finished", run
    return run.dir


def resumed(run_dir: Path, *extra: str):
    """`python -m resnet_exp resume=RUN_DIR EXTRA` in this process: the command line the CLI
    makes of it (runs/resume.py), run through the Python API."""
    import resnet_exp
    from resnet_exp.runs import resume

    return resnet_exp.run(resume.command_line(["resnet_exp", f"resume={run_dir}", *extra])[1:])


def refusal(capsys, overrides: list[str], output_dir: Path | None = None) -> str:
    """The `error:` line the command line would end with for OVERRIDES, from a run in this
    process (resnet_exp.run): a setting refused before the run folder is claimed is printed
    and ends in SystemExit(2), as the CLI exits; one found later is a UserError, which the CLI
    prints. No check may be skipped: Hydra turns an exception in its callbacks into a warning."""
    import resnet_exp
    from resnet_exp.core.errors import UserError

    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            resnet_exp.run(overrides, output_dir=output_dir)
        except UserError as e:
            line = f"error: {e}"
        except SystemExit as e:
            err = capsys.readouterr().err
            assert e.code == 2 and "Traceback" not in err, err[-3000:]
            line = err.strip().splitlines()[-1]
        else:
            raise AssertionError(f"{overrides} ran")
    skipped = [str(w.message) for w in caught if str(w.message).startswith("Callback ")]
    assert not skipped, skipped
    assert line.startswith("error: "), line
    return line


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
def one_thread():
    """In-process training takes one intra-op thread, as run_cli's processes do: the suite runs
    a pytest-xdist worker per core, and two workers' OpenMP threads spinning for each other's
    cores slow both many times over. OMP_NUM_THREADS makes a run's `cpu_threads=auto` keep it
    (training/cpu_threads.py) instead of setting this process's count from the idle cores."""
    import torch

    before = os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    yield
    if before[0] is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = before[0]
    torch.set_num_threads(before[1])



@pytest.fixture(scope="session", autouse=True)
def wandb_offline(tmp_path_factory):
    """`logger=wandb` runs (tests/test_wandb.py, the combination matrix) in W&B's offline mode,
    here and in every process they start: no account, no network. Its cache (wandb-core's logs)
    and settings go to the session's folder rather than ~/.cache and ~/.config."""
    home = tmp_path_factory.mktemp("wandb")
    names = {"WANDB_MODE": "offline", "WANDB_SILENT": "true",
             "WANDB_CACHE_DIR": str(home / "cache"), "WANDB_CONFIG_DIR": str(home / "config"),
             "WANDB_DATA_DIR": str(home / "data")}
    before = {k: os.environ.get(k) for k in names}
    os.environ.update(names)
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """tmp_path as the working folder: an in-process run or sweep lands in ./outputs, as a
    user's from a project folder."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """One finished run (SMOKE_RUN) for every test that only reads a run folder."""
    return made_once(tmp_path_factory, "smoke_run",
                     lambda cwd: finished_run(cwd, SMOKE_RUN)) / "run"


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """A finished run that has learnt something (DIGITS_RUN: ~70% test accuracy, chance 10%),
    read-only, for the tests that use a trained network (predict, export)."""
    return made_once(tmp_path_factory, "digits_run",
                     lambda cwd: finished_run(cwd, DIGITS_RUN)) / "run"


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory) -> Path:
    """One finished sweep (SMOKE_SWEEP: 4 jobs, the real `-m` command) for every test that only
    reads a sweep folder."""

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
            new_interpreter: bool = True, module: str = "resnet_exp"):
    """`python -m resnet_exp ARGS` as a user runs it, in a new interpreter in `cwd` (runs land in
    cwd/outputs); `module=` another command (`resnet_exp.eval`). For what only a process shows:
    exit statuses, what reaches stdout and stderr, signals, `-m` launchers. A test that only
    needs a run trains in this process (`resnet_exp.run`). `new_interpreter` is always so now
    (the forked warm interpreter is gone) and is accepted for the callers that still name it.
    One intra-op thread unless `env` says otherwise: the suite runs a process per core (xdist),
    and OpenMP threads that spin for a core another process holds made a tiny run 20x slower;
    and runs that are compared (a reproduction, a resume and its twin) need the same float sums."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0", **ONE_THREAD,
           **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def dry_sweep(args: list[str]) -> list[dict]:
    """`python -m resnet_exp ARGS` (a sweep) with nothing trained, in this process and the
    current folder: the command line as the CLI hands it to Hydra (runs/resume.py), Hydra's own
    `-m` path and the sweeper the config names, which expands the sweep into jobs. The launcher
    the config names is instantiated (its settings checked), then a stand-in launches the jobs:
    it composes each one as a launcher does, resolves it in its job folder and passes it through
    the run's settings check. Returns each job's resolved config (less Hydra's node) with its
    `overrides`, in job order."""
    import hydra
    from hydra.core.plugins import Plugins
    from hydra.core.utils import JobReturn, JobStatus
    from hydra.plugins.launcher import Launcher
    from hydra.plugins.sweeper import Sweeper
    from omegaconf import OmegaConf, open_dict

    from resnet_exp.core.config import check_run_settings, register_resolvers
    from resnet_exp.runs import resume
    from resnet_exp.runs.context import resolving_as_run

    jobs: list[dict] = []

    class DryLauncher(Launcher):
        def setup(self, *, hydra_context, task_function, config) -> None:
            self.context, self.config = hydra_context, config

        def launch(self, job_overrides, initial_job_idx) -> list[JobReturn]:
            for num, overrides in enumerate(job_overrides, initial_job_idx):
                cfg = self.context.config_loader.load_sweep_config(self.config, list(overrides))
                with open_dict(cfg):
                    cfg.hydra.job.num = cfg.hydra.job.id = num
                folder = Path(cfg.hydra.sweep.dir, str(cfg.hydra.sweep.subdir))
                with resolving_as_run(cfg, folder) as job:
                    check_run_settings(job)
                    jobs.append({**OmegaConf.to_container(OmegaConf.masked_copy(
                        job, [k for k in job if k != "hydra"]), resolve=True),
                        "overrides": list(overrides)})
            return [JobReturn(overrides=list(o), status=JobStatus.COMPLETED, _return_value=0.0)
                    for o in job_overrides]

    def launcher(plugins, hydra_context, task_function, config) -> Launcher:
        real(plugins, hydra_context=hydra_context, task_function=task_function, config=config)
        dry = DryLauncher()
        dry.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        return dry

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
    def never_called(cfg) -> None:
        raise AssertionError("the stand-in launcher runs no job")

    real = Plugins.instantiate_launcher
    register_resolvers()
    argv = resume.command_line(["resnet_exp", *args])
    # The stand-in composes every job; the sweeper's own check before it launches a batch
    # (validate_batch_is_legal) would compose each a second time.
    with mock.patch.object(Plugins, "instantiate_launcher", launcher), \
            mock.patch.object(Sweeper, "validate_batch_is_legal", lambda self, batch: None), \
            mock.patch.object(sys, "argv", argv):
        never_called()
    return jobs


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
