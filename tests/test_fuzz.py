"""Any value for any key of the config is a run or one line: Hypothesis gives one key of the
default run's config a value of a wrong type, out of range, empty, huge, unicode or a path, and
every draw must end without a Python traceback, with status 0 (a run that finished: run.json
says so) or 2 (one `error:` line, and no run folder left, or a readable `failed` run.json when
training had started).

`make test` draws FUZZ_EXAMPLES (default 10) with a fixed seed; `make test-fuzz` draws 200.
"""

from __future__ import annotations

import json
import os

import pytest
from conftest import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from resnet_exp import config
from resnet_exp.runs import trust

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
    result = run_cli([*BASE, f"{key}={value}"], cwd, timeout=300)
    assert "Traceback" not in result.stderr, f"{key}={value}:\n{result.stderr[-3000:]}"
    assert result.returncode in (0, 2), f"{key}={value}: status {result.returncode}"
    if result.returncode == 2:
        assert result.stderr.strip().splitlines()[-1].startswith("error: "), result.stderr
    problem = _consistent(cwd)
    assert problem is None, f"{key}={value}: {problem}"
    runs = list((cwd / "outputs").glob("*/*")) if (cwd / "outputs").is_dir() else []
    if result.returncode == 0:
        assert len(runs) == 1 and json.loads((runs[0] / "run.json").read_text())[
            "status"] == "finished", f"{key}={value}: a run that exits 0 finished"


@pytest.mark.parametrize("key", ["seed", "data.batch_size", "optimizer.lr", "model.depth"])
def test_the_fuzzed_keys_include_the_ones_users_mistype(key):
    assert key in KEYS
