"""`python -m resnet_exp ARGS` started from a warm interpreter: a fork of one that has imported
torch, Lightning and the package already (the standard library's forkserver, one per pytest
worker), so that a test's run skips the 4-5 s of imports a new interpreter pays.

The fork is a process of its own, as a new interpreter's is: its exit status, its signals, its
stdout and stderr, its cwd, environment and sys.path are those `python -m` would have, and what
a run changes in torch's or Hydra's global state dies with it. What it does not repeat is the
imports: a warning printed while a library imports, or torch's thread count read from
OMP_NUM_THREADS at import (set here from the environment given). The tests that need those
(the README's default run and its console, the shared `smoke_run`, the docs' commands) start a
new interpreter: docs/testing.md#how-a-test-starts-the-command-line.
"""

from __future__ import annotations

import atexit
import json
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from functools import cache
from pathlib import Path

# What a run, an evaluation, a report or a sweep imports: loaded once, in the fork server. Not
# resnet_exp.__main__: `python -m` runs it anew, and runpy warns of one imported already.
PRELOAD = ["resnet_exp.train", "resnet_exp.eval", "resnet_exp.report",
           "resnet_exp.reproduce", "resnet_exp.analyze", "resnet_exp.figures", "matplotlib.pyplot",
           "tensorboard.summary", "hydra._internal.core_plugins.basic_launcher"]


@cache
def _context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


@cache
def _interpreter_path() -> tuple[str, ...]:
    """sys.path of a new interpreter, less its first entry (the cwd of `python -m`) and
    PYTHONPATH: the test process's own has pytest's additions."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import json, sys; print(json.dumps(sys.path[1:]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=env).stdout
    return tuple(json.loads(out))


def _run(module: str, args: list[str], cwd: str, env: dict, path: list[str], out: str,
         err: str) -> None:
    """In the fork: become `python -m MODULE ARGS` run in `cwd` with `env`, writing to out, err."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.path[:] = path
    for fd, name in ((1, out), (2, err)):
        file = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(file, fd)
        os.close(file)
    # Ctrl-C raises KeyboardInterrupt, as in an interpreter started from a terminal: the fork
    # server inherits the test process's SIGINT, which a shell's background job (`make test &`)
    # ignores.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if env.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    sys.argv = ["-m", *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        raise
    except BaseException:  # the interpreter prints it and exits 1; multiprocessing would add a line
        traceback.print_exc()
        raise SystemExit(1) from None
    finally:
        # An interpreter's exit: wait for its non-daemon threads, then run the atexit functions
        # (TensorBoard's and MLflow's writers end there); a multiprocessing child skips both.
        threading._shutdown()
        atexit._run_exitfuncs()


def run(module: str, args: list[str], cwd: Path, env: dict, timeout: float):
    """`python -m MODULE ARGS` in `cwd` with exactly `env`, as subprocess.run(capture_output=True,
    text=True) would return it."""
    python_path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    path = [str(cwd), *python_path, *_interpreter_path()]
    command = [sys.executable, "-m", module, *args]
    with tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder, "stdout"), Path(folder, "stderr")
        process = _context().Process(target=_run, args=(module, args, str(cwd), env, path, str(out),
                                                        str(err)))
        process.start()
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(command, timeout, out.read_text(), err.read_text())
        return subprocess.CompletedProcess(command, process.exitcode, out.read_text(),
                                           err.read_text())
