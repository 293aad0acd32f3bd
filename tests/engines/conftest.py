"""The engines `make test-engines` starts (scripts/engines.sh): where each one answers, read from
the environment that script sets. Outside it (plain `make test`), the tests here are deselected:
they need root and services no laptop runs (docs/testing.md#the-real-engines)."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("ENGINES_RUN"):
        return
    engines = [item for item in items if item.get_closest_marker("engines")]
    if engines:
        config.hook.pytest_deselected(items=engines)
        items[:] = [item for item in items if not item.get_closest_marker("engines")]


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """`postgresql+psycopg://postgres@127.0.0.1:PORT` of the throw-away cluster, no database."""
    return os.environ["ENGINES_POSTGRES"]


@pytest.fixture(scope="session")
def mlflow_url() -> str:
    """`http://127.0.0.1:PORT` of the MLflow tracking server."""
    return os.environ["ENGINES_MLFLOW"]
