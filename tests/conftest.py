"""Shared fixtures: composing the real config tree, and running the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED = ROOT.parent / "shared"


def compose_config(overrides: list[str], output_dir: Path):
    """The config `python -m resnet_exp <overrides>` would run, with its hydra node set so that
    `${hydra:...}` interpolations resolve: what resume, reproduce and eval compose too."""
    from resnet_exp.resume import compose

    return compose(overrides, output_dir)


def finished_run(cwd: Path, args: list[str], env: dict | None = None) -> Path:
    """`python -m resnet_exp ARGS` into cwd/run, which must finish."""
    result = run_cli([*args, "hydra.run.dir=run"], cwd, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd / "run"


@pytest.fixture
def compose_cfg(tmp_path):
    yield lambda *overrides: compose_config(list(overrides), tmp_path)
    GlobalHydra.instance().clear()


def run_cli(args: list[str], cwd: Path, timeout: float = 600, env: dict | None = None):
    """`python -m resnet_exp ARGS` as a user runs it, in `cwd` (runs land in cwd/outputs)."""
    return subprocess.run(
        [sys.executable, "-m", "resnet_exp", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0", **(env or {})},
    )


def single_run_dir(cwd: Path) -> Path:
    runs = sorted((cwd / "outputs" / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]
