"""Any value for any key of the config is a run or one line: Hypothesis gives one key of the
default run's config a value of a wrong type, out of range, empty, huge, unicode or a path, and
every draw must end without a Python traceback, with status 0 (a run that finished: run.json
says so) or 2 (one `error:` line, and no run folder left, or a readable `failed` run.json when
training had started).

Each draw runs in this process, as the command line runs it (runs/resume.py's reading of the
arguments, then the Python API, resnet_exp.run): a finished run is status 0; a UserError, or a
SystemExit(2) after its printed `error:` line, is what the CLI ends with status 2 and that line
(tests/test_adversarial.py and test_robustness.py check that mapping on real processes); any
other exception is the traceback a user would see.

`make test` draws FUZZ_EXAMPLES (default 10) with a fixed seed; `make test-fuzz` draws 200.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

import resnet_exp
from resnet_exp.core import config
from resnet_exp.core.errors import UserError
from resnet_exp.runs import resume, trust

BASE = ["trainer=smoke", "callbacks=lean"]


def _keys() -> list[str]:
    """Every settable key of the default run (not the code it names: that is trust.py's)."""
    cfg = OmegaConf.to_container(config.compose(BASE), resolve=False)
    return sorted(key for key, name, _, _ in trust._items(cfg)
                  if not str(name).startswith("_") and not key.startswith("trainer.plugins"))


KEYS = _keys()
VALUES = [
    "abc", "true", "[1,2]", "{a: 1}", "null",  # wrong types
    "-1", "0", "-0.5", "2", "1e9",  # out of range
    "''", "[]",  # empty
    "1000000000000", "1e308",  # huge
    "'üñíçødé'", "'日本'",  # unicode
    "/etc/passwd", "'../../elsewhere'",  # paths
]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))


def _status_and_error(cwd: Path, overrides: list[str]) -> tuple[int, str]:
    """(the status the command line would exit with, the stderr it would end with) of
    `python -m resnet_exp OVERRIDES` in `cwd`, run in this process."""
    here, threads, err = os.getcwd(), torch.get_num_threads(), io.StringIO()
    os.chdir(cwd)
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(err):
            warnings.simplefilter("always")
            try:
                resnet_exp.run(resume.command_line(["resnet_exp", *overrides])[1:])
                status = 0
            except UserError as e:
                print(f"error: {e}", file=err)
                status = 2
            except SystemExit as e:
                status = e.code
    finally:
        os.chdir(here)
        torch.set_num_threads(threads)  # a draw of cpu_threads sets this process's count
    # Hydra turns an exception in its callbacks (the run's checks) into a warning: a check skipped
    skipped = [f"Warning: {w.message}" for w in caught if str(w.message).startswith("Callback ")]
    return status, "\n".join([err.getvalue(), *skipped])


def _consistent(cwd) -> str | None:
    """What is wrong with the run folders left in cwd, None when nothing is."""
    for run in (cwd / "outputs").glob("*/*") if (cwd / "outputs").is_dir() else []:
        try:
            status = json.loads((run / "run.json").read_text()).get("status")
        except (OSError, ValueError) as e:
            return f"{run}: run.json unreadable ({e})"
        if status not in ("finished", "failed"):
            return f"{run}: status {status}"
    return None


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), value=st.sampled_from(VALUES))
def test_any_value_of_any_key_is_a_run_or_one_line(tmp_path_factory, key, value):
    cwd = tmp_path_factory.mktemp("fuzz")
    status, stderr = _status_and_error(cwd, [*BASE, f"{key}={value}"])
    assert "Traceback" not in stderr and "Warning" not in stderr, f"{key}={value}:\n{stderr}"
    assert status in (0, 2), f"{key}={value}: status {status}\n{stderr[-3000:]}"
    if status == 2:
        assert stderr.strip().splitlines()[-1].startswith("error: "), stderr
    problem = _consistent(cwd)
    assert problem is None, f"{key}={value}: {problem}"
    runs = list((cwd / "outputs").glob("*/*")) if (cwd / "outputs").is_dir() else []
    if status == 0:
        assert len(runs) == 1 and json.loads((runs[0] / "run.json").read_text())[
            "status"] == "finished", f"{key}={value}: a run that exits 0 finished"


@pytest.mark.parametrize("key", ["seed", "data.batch_size", "optimizer.lr", "model.depth"])
def test_the_fuzzed_keys_include_the_ones_users_mistype(key):
    assert key in KEYS
