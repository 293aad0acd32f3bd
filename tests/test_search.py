"""The Optuna sweeper's reading of the command line (hydra_plugins/resnet_exp_sweepers/): a key
pinned there leaves the search space, and a bad sweeper setting is one line that leaves no sweep
folder behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import resumed, run_cli

from hydra_plugins.resnet_exp_sweepers.optuna_sweeper import search_space


def test_a_pinned_key_wins_over_its_searched_range():
    space, fixed = search_space({"optimizer.lr": "tag(log, interval(0.01, 0.5))",
                                 "optimizer.weight_decay": "interval(0, 0.001)"},
                                ["optimizer.lr=1e6", "seed=3"])
    assert sorted(space) == ["optimizer.weight_decay"]
    assert fixed == ["optimizer.lr=1e6", "seed=3"]


@pytest.mark.slow
@pytest.mark.parametrize(("override", "says"), [
    ("hydra.sweeper.direction=maximise", "choose maximize or minimize"),
    ("hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials=0: give a whole number >= 1"),
    ("hydra.sweeper.n_trials=-3", "hydra.sweeper.n_trials=-3: give a whole number >= 1"),
    ("hydra.sweeper.n_jobs=0", "hydra.sweeper.n_jobs=0: give a whole number >= 1"),
    ("optimizer.lr=choice()", "empty choice is not legal"),
    ("hydra.sweeper.storage=sqlite:///{tmp}/garbage.db", "cannot be opened as an Optuna storage"),
    ("hydra.sweeper.storage=sqlite:///{tmp}/other.db",
     "searched optimizer.lr over FloatDistribution(high=0.5, log=True, low=0.01"),
])
def test_a_bad_search_setting_is_one_line_and_leaves_nothing(tmp_path, override, says):
    import optuna
    from optuna.distributions import FloatDistribution

    (tmp_path / "garbage.db").write_bytes(b"not a database, truncated")
    other = optuna.create_study(study_name="cifar_resnet", direction="maximize",
                                storage=f"sqlite:///{tmp_path}/other.db")
    other.add_trial(optuna.trial.create_trial(  # searched over another space
        params={"optimizer.lr": 0.5}, value=0.9,
        distributions={"optimizer.lr": FloatDistribution(0.01, 0.5, log=True)}))
    result = run_cli(["hparams_search=cifar_resnet", "optimizer.lr=interval(0.1,1.0)",
                      override.format(tmp=tmp_path), "trainer=smoke"], tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and says in result.stderr.splitlines()[-1]
    assert not any((tmp_path / "outputs" / "multirun").glob("*"))


@pytest.mark.slow
def test_a_trial_folder_resumes_and_reproduces_as_that_one_trial(tmp_path, monkeypatch, capsys):
    import optuna

    from resnet_exp import reproduce

    search = ["hparams_search=cifar_resnet", "hydra.sweeper.n_trials=2", "trainer=smoke",
              "callbacks=lean", "hydra.sweep.dir=search"]
    result = run_cli(search, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    storage = f"sqlite:///{tmp_path / 'search' / 'optuna.db'}"

    def trials() -> int:
        return len(optuna.load_study(study_name="cifar_resnet", storage=storage).trials)

    assert trials() == 2
    # the search's end says what it found, where that run is and how to look at all of it
    study = optuna.load_study(study_name="cifar_resnet", storage=storage)
    assert study.metric_names == ["val/acc_best"]
    best = study.best_trial
    assert f"best trial {best.number}: val/acc_best=" in result.stdout
    assert f"run folder: {best.user_attrs['run_dir']}" in result.stdout
    assert "optuna-dashboard sqlite:///search/optuna.db" in result.stdout  # as configured
    assert all(Path(t.user_attrs["run_dir"]).is_dir() for t in study.trials)
    (trial,) = [p for p in (tmp_path / "search").iterdir() if p.name.startswith("1_")]
    assert "=" in trial.name and "," in trial.name  # the name a user pastes, unquoted
    capsys.readouterr()
    assert resumed(trial).status == "finished"
    assert "finished already" in capsys.readouterr().out and trials() == 2
    monkeypatch.chdir(tmp_path)  # the reproduction's new run goes to ./outputs/runs/
    new_dir, metrics, _ = reproduce.reproduce(trial, [])
    assert trials() == 2 and "search" not in str(new_dir) and "test/acc" in metrics
    assert new_dir.resolve().is_relative_to(tmp_path.resolve())


@pytest.mark.slow
def test_a_killed_trial_runs_again_and_the_resumed_search_ends_with_its_trials(tmp_path):
    import sqlite3

    import optuna
    from optuna.trial import TrialState

    from hydra_plugins.resnet_exp_sweepers.optuna_sweeper import search_space
    from resnet_exp.core import config

    search = ["hparams_search=cifar_resnet", "hydra.sweeper.n_trials=3", "trainer=smoke",
              "callbacks=lean", "hydra.sweep.dir=search"]
    two = run_cli([*search, "hydra.sweeper.n_trials=2"], tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    # the search killed (kill -9) while a third trial ran: RUNNING, its last beat an hour ago
    # (written into Optuna's heartbeat table: no test waits for a clock)
    db = tmp_path / "search" / "optuna.db"
    study = optuna.load_study(study_name="cifar_resnet", storage=f"sqlite:///{db}")
    space, _ = search_space(config.compose(["hparams_search=cifar_resnet"], with_hydra=True)
                            .hydra.sweeper.params,
                            [])
    killed = study.ask(space)
    with sqlite3.connect(db) as connection:
        trial_id = connection.execute("SELECT trial_id FROM trials WHERE number = ?",
                                      (killed.number,)).fetchone()[0]
        connection.execute("INSERT INTO trial_heartbeats (trial_id, heartbeat) VALUES "
                           "(?, datetime('now', '-1 hour'))", (trial_id,))
    resumed = run_cli([*search, "resume=true"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = optuna.load_study(study_name="cifar_resnet", storage=f"sqlite:///{db}").trials
    states = [t.state for t in trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL,
                      TrialState.COMPLETE], states
    assert trials[3].params == killed.params  # the killed trial's point, asked again
    assert "Traceback" not in resumed.stderr


@pytest.mark.slow
def test_a_continued_study_names_its_job_folders_by_trial_number(tmp_path):
    """A second search on the same study starts at trial 2: its folder says 2_, not 0_, and the
    best trial it reports is a folder of that number in one of the two sweeps."""
    from conftest import job_dirs
    from omegaconf import OmegaConf

    search = ["hparams_search=cifar_resnet", "trainer=smoke", "callbacks=lean",
              "hydra.sweeper.sampler.n_startup_trials=1"]
    first = run_cli([*search, "hydra.sweeper.n_trials=2", "hydra.sweep.dir=first"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    storage = f"hydra.sweeper.storage=sqlite:///{tmp_path / 'first' / 'optuna.db'}"
    second = run_cli([*search, "hydra.sweeper.n_trials=1", storage, "hydra.sweep.dir=second"],
                     tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    numbers = {sweep: sorted(int(d.name.split("_")[0]) for d in job_dirs(tmp_path / sweep))
               for sweep in ("first", "second")}
    assert numbers == {"first": [0, 1], "second": [2]}, numbers
    best = OmegaConf.load(tmp_path / "second" / "optimization_results.yaml").best_trial
    assert best in numbers["first"] + numbers["second"]
