"""Optuna searches whose trials run at once and write to one study: on the real PostgreSQL that
`make test-engines` starts (through psycopg 3) and on a JournalFileBackend file, with two joblib
workers, then the SLURM preset (conf/hparams_search/cifar_resnet_slurm.yaml) on the real
one-node SLURM. The pruning callback of each job reports to its trial through the storage from
its own process, as on a cluster's nodes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from conftest import TESTS_ON_PATH, run_cli

pytestmark = [pytest.mark.engines, pytest.mark.slow]

SMOKE = ["trainer=smoke", "trainer.max_epochs=2", "callbacks=lean"]
# trial numbers 1 and 3 are pruned at their first report (tests/prune_trials.py): pruning that
# does not depend on the values a short training reaches
PRUNED = [1, 3]
SEARCH = ["hparams_search=cifar_resnet", *SMOKE, "hydra/launcher=joblib",
          "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2",
          "hydra/sweeper/pruner=none", "hydra.sweeper.pruner._target_=prune_trials.PruneTrials",
          f"+hydra.sweeper.pruner.numbers=[{','.join(map(str, PRUNED))}]"]


@pytest.fixture(params=["postgresql", "journal"])
def storage(request, tmp_path) -> str:
    """A new study's storage: a database of its own on the PostgreSQL server, or a journal file
    (`journal:///` + an absolute path, as sqlite's URLs)."""
    if request.param == "journal":
        return f"journal:///{tmp_path / 'study' / 'optuna.journal'}"
    import psycopg

    server = request.getfixturevalue("postgres_url")
    name = f"study_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.replace("+psycopg", "") + "/postgres", autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


def load(storage: str, study_name: str):
    import optuna

    from resnet_exp.callbacks.pruning import open_storage

    return optuna.load_study(study_name=study_name, storage=open_storage(storage))


def test_two_searches_with_two_workers_each_add_to_one_study(tmp_path, storage):
    from optuna.trial import TrialState

    outputs = []
    for search in (1, 2):  # the same command twice: the second adds to the first's study
        result = run_cli([*SEARCH, f"hydra.sweeper.storage={storage}",
                          f"hydra.sweep.dir=outputs/search{search}"], tmp_path, timeout=600,
                         env=TESTS_ON_PATH)
        assert result.returncode == 0, result.stderr[-3000:]
        outputs.append(result.stdout + result.stderr)
        # the best trial, said once by each search, with the storage to look at it
        assert result.stdout.count("best trial ") == 1, result.stdout[-3000:]
        assert f"study: {storage}" in result.stdout
    for text in outputs:
        assert "database is locked" not in text and "Traceback" not in text, text[-3000:]

    trials = load(storage, "cifar_resnet").trials
    # none lost, none left running, each its own point and its own run folder
    assert [t.number for t in trials] == list(range(4))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), trials
    assert [t.number for t in trials if t.state == TrialState.PRUNED] == PRUNED
    points = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(points)) == 4, points
    folders = [Path(t.user_attrs["run_dir"]) for t in trials]
    assert len(set(folders)) == 4 and all((f / "run.json").is_file() for f in folders)
    for trial in trials:  # every epoch's report reached the storage from the job's process
        assert len(trial.intermediate_values) == (1 if trial.number in PRUNED else 2)


def test_slurm_search_preset_writes_one_journal(tmp_path):
    result = run_cli(["hparams_search=cifar_resnet_slurm", *SMOKE, "resume=true",
                      "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2",
                      "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
                      "hydra.launcher.mem_gb=2", "hydra.sweep.dir=outputs/search"],
                     tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    both = result.stdout + result.stderr
    assert "database is locked" not in both and "Traceback" not in both, both[-3000:]
    journal = tmp_path / "outputs" / "search" / "optuna.journal"
    assert journal.is_file()
    from optuna.trial import TrialState

    trials = load(f"journal:///{journal}", "cifar_resnet").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert trials[0].params != trials[1].params
    assert all(len(t.intermediate_values) == 2 for t in trials)  # reported from the SLURM jobs
    assert f"optuna-dashboard {journal}" in result.stdout or \
        "optuna-dashboard outputs/search/optuna.journal" in result.stdout
