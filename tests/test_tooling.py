"""The project's own checks, as `make lint` and the pre-commit hooks run them: the lint passes
with the ruff the dev extra pins (McCabe <= 8 for every function of the package among its rules),
and the pre-commit config is one pre-commit accepts, whose hooks name files that exist."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_the_lint_passes_with_the_pinned_ruff():
    ruff = shutil.which("ruff", path=str(BIN))
    if ruff is None:
        pytest.skip("ruff is not installed beside this Python: pip install -e '.[dev]'")
    result = subprocess.run([ruff, "check", "resnet_exp", "hydra_plugins", "tests", "scripts"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


def test_the_pre_commit_config_is_valid_and_its_hooks_exist():
    pre_commit = shutil.which("pre-commit", path=str(BIN))
    if pre_commit is None:
        pytest.skip("pre-commit is not installed beside this Python: pip install -e '.[dev]'")
    config = ROOT / ".pre-commit-config.yaml"
    result = subprocess.run([pre_commit, "validate-config", str(config)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for hook in yaml.safe_load(config.read_text())["repos"][0]["hooks"]:
        program = hook["entry"].split()[0]
        # the hooks run the venv's tools (make install) or make itself
        assert program == "make" or (ROOT / program).name in {"ruff", "python"}, hook
        for path in hook["entry"].split()[1:]:
            if path.startswith("tests/"):
                assert (ROOT / path).is_file(), hook
