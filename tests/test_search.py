"""The Optuna sweeper's reading of the command line (hydra_plugins/resnet_exp_sweepers/): a key
pinned there leaves the search space, and a bad sweeper setting is one line that leaves no sweep
folder behind."""

from __future__ import annotations

import pytest
from conftest import run_cli

from hydra_plugins.resnet_exp_sweepers.optuna_sweeper import search_space


def test_a_pinned_key_wins_over_its_searched_range():
    space, fixed = search_space({"optimizer.lr": "tag(log, interval(0.01, 0.5))",
                                 "optimizer.weight_decay": "interval(0, 0.001)"},
                                ["optimizer.lr=1e6", "seed=3"])
    assert sorted(space) == ["optimizer.weight_decay"]
    assert fixed == ["optimizer.lr=1e6", "seed=3"]


@pytest.mark.parametrize(("override", "says"), [
    ("hydra.sweeper.direction=maximise", "choose maximize or minimize"),
    ("hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials=0: give a whole number >= 1"),
    ("hydra.sweeper.n_trials=-3", "hydra.sweeper.n_trials=-3: give a whole number >= 1"),
    ("hydra.sweeper.n_jobs=0", "hydra.sweeper.n_jobs=0: give a whole number >= 1"),
])
def test_a_bad_search_setting_is_one_line_and_leaves_nothing(tmp_path, override, says):
    result = run_cli(["hparams_search=cifar_resnet", override, "trainer=smoke"], tmp_path,
                     new_interpreter=True)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and says in result.stderr.splitlines()[-1]
    assert not any((tmp_path / "outputs" / "multirun").glob("*"))
