"""Shared fixtures: composing the real config tree, and running the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED = ROOT.parent / "shared"


def compose_config(overrides: list[str], output_dir: Path):
    """The config `python -m resnet_exp <overrides>` would run, with its hydra node set so that
    `${hydra:...}` interpolations resolve."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


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
