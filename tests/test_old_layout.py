"""A run folder written before the package was regrouped (flat modules: resnet_exp.guards,
resnet_exp.gradflow, ...) still evaluates, reproduces and resumes, without `--trust` and
without a config-drift warning about a moved class: its saved import paths are read under
today's names. Every rule for an older layout lives in runs/migrate.py and leaves a folder of
today's layout as it is; a folder of a newer layout is refused by every reader, in one line.

tests/data/old_layout_run/ is a real run of the flat layout (commit 783b8fd):
    python -m resnet_exp trainer=smoke callbacks=study model.depth=8 +model.stem_width=4 \
        deterministic=true name=old_layout
kept without its TensorBoard files and figures.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli

import resnet_exp
from resnet_exp import eval as evaluate
from resnet_exp import reproduce, runs
from resnet_exp.core.errors import UserError
from resnet_exp.runs import compare, migrate, read, record, resume, trust

OLD_RUN = Path(__file__).parent / "data" / "old_layout_run"


@pytest.fixture
def old_run(tmp_path) -> Path:
    run = tmp_path / "old_layout_run"
    shutil.copytree(OLD_RUN, run)
    return run


def test_the_fixture_names_the_old_import_paths():
    saved = (OLD_RUN / ".hydra" / "config.yaml").read_text()
    for old in ("resnet_exp.guards.StopOnNonFinite", "resnet_exp.gradflow.GradientFlow",
                "resnet_exp.augment.Augmentation", "resnet_exp.checkpoints.ModelCheckpoint"):
        assert old in saved
        assert migrate.canonical(old) != old


def test_every_moved_path_imports_under_its_new_name():
    from hydra.utils import get_class

    for new in migrate.MOVED.values():
        assert get_class(new).__name__ == new.rsplit(".", 1)[1]
        assert trust.allowed(new)


def moved_paths_drifted(stderr: str) -> list[str]:
    """The lines of the replay's drift warning (`  key: saved -> composed`) about a moved
    import path (the same name under another module): none may be there. Keys added to the tree
    since the run, and targets the tree has since replaced by another (RichProgressBar by
    progress_bar), are reported, truthfully, and are not the point here; neither is any other
    output of the run."""
    _, _, warning = stderr.partition("the config tree has changed since")
    moved = []
    for line in warning.splitlines():
        key, _, change = line.strip().partition(": ")
        saved, _, composed = change.partition(" -> ")
        if (line.startswith("  ") and key.endswith("_target_")
                and saved.rsplit(".", 1)[-1] == composed.rsplit(".", 1)[-1]):
            moved.append(line)
    return moved


def test_old_run_evaluates_to_its_recorded_metrics_without_trust(old_run, capsys):
    recorded = read.read_json(old_run / "metrics.json")
    metrics, out = evaluate.evaluate(old_run, [])
    assert metrics["test/acc"] == recorded["test/acc"]
    assert metrics["test/loss"] == pytest.approx(recorded["test/loss"], rel=1e-6)
    assert moved_paths_drifted(capsys.readouterr().err) == []
    assert read.run_status(out) == "finished"


@pytest.mark.slow
def test_old_run_reproduces_exactly(old_run, capsys, monkeypatch):
    monkeypatch.chdir(old_run.parent)  # the reproduction's folder: ./outputs/runs/
    assert reproduce.main([str(old_run)]) == 0
    printed = capsys.readouterr()
    assert "identical: all" in printed.out, printed.out[-3000:]
    assert moved_paths_drifted(printed.err) == []


@pytest.mark.slow
def test_old_run_resumes_in_its_own_folder(old_run):
    info = read.read_json(old_run / "run.json")
    (old_run / "run.json").write_text(json.dumps(info | {"status": "interrupted"}))
    (old_run / "metrics.json").unlink()
    result = run_cli([f"resume={old_run}", "trainer.max_epochs=2"], old_run.parent, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert moved_paths_drifted(result.stderr) == []
    assert read.run_status(old_run) == "finished"
    assert read.read_json(old_run / "metrics.json")["epochs"] == 2
    assert sorted(p.name for p in (old_run / "checkpoints").iterdir()) == ["best.ckpt",
                                                                          "last.ckpt"]


def test_the_fixture_is_layout_1_and_a_new_run_record_is_todays(tmp_path):
    assert "layout" not in read.read_json(OLD_RUN / "run.json")
    assert migrate.check(OLD_RUN) == 1
    record.RunRecord(tmp_path / "new").start(seed=0)
    assert migrate.check(tmp_path / "new") == runs.LAYOUT == 3


def test_a_layout_2_run_names_its_loose_helpers_by_their_wing():
    # layout 2 kept module.py, schedules.py, ... beside the wings; today's code has them in
    # training/ and core/, and reads such a run's targets there (migrate.WINGS)
    saved = {"module": {"_target_": "resnet_exp.module.Classifier",
                        "param_groups": {"_target_": "resnet_exp.param_groups.ParamGroups"}},
             "scheduler": {"_target_": "resnet_exp.schedules.warmup"}}
    assert migrate.config(saved, 2) == {
        "module": {"_target_": "resnet_exp.training.module.Classifier",
                   "param_groups": {"_target_": "resnet_exp.training.param_groups.ParamGroups"}},
        "scheduler": {"_target_": "resnet_exp.training.schedules.warmup"}}
    assert migrate.overrides(["+callbacks.s._target_=resnet_exp.seeding.EpochSeed"], 2) == [
        "+callbacks.s._target_=resnet_exp.training.seeding.EpochSeed"]
    assert all(trust.allowed(t) for t in ("resnet_exp.training.module.Classifier",
                                          "resnet_exp.training.schedules.warmup"))
    assert migrate.config(saved, 3) == saved


def test_a_resumed_run_keeps_the_layout_its_folder_was_written_in(old_run):
    """A resume rewrites run.json but neither .hydra/ nor the events logged before."""
    record.RunRecord(old_run).start(seed=42)
    assert read.read_json(old_run / "run.json")["layout"] == 1
    (old_run / "run.json").unlink()
    record.note(old_run, reproduces="elsewhere")  # noted before its start: a new run
    record.RunRecord(old_run).start(seed=42)
    assert read.read_json(old_run / "run.json")["layout"] == runs.LAYOUT


def newer(run: Path) -> None:
    """Make `run` look written by a later resnet-exp with a layout this code does not know."""
    info = read.read_json(run / "run.json")
    packages = info["packages"] | {"resnet-exp": "9.1.0"}
    (run / "run.json").write_text(json.dumps(info | {"layout": runs.LAYOUT + 1,
                                                     "packages": packages}))


def test_a_newer_layout_is_refused_by_every_reader_naming_the_resnet_exp_that_wrote_it(
        old_run, capsys):
    newer(old_run)
    wanted = (f"{old_run} has run-folder layout {runs.LAYOUT + 1}, newer than this resnet-exp",
              "read it with the resnet-exp that wrote it, 9.1.0 (commit 783b8fdd03fe)")
    for main in (evaluate.main, reproduce.main):
        assert main([str(old_run)]) == 2
        error = capsys.readouterr().err.strip()
        assert all(part in error for part in wanted) and len(error.splitlines()) == 1, error
    for load in (resnet_exp.load_run,
                 lambda run: resume.command_line(["resnet_exp", f"resume={run}"])):
        with pytest.raises(UserError, match="read it with the resnet-exp that wrote it"):
            load(old_run)
    assert sorted(p.name for p in old_run.iterdir()) == sorted(p.name for p in OLD_RUN.iterdir())
    # the report lists it, and averages nothing of it
    listed = compare.read_run(old_run)
    assert not listed.done and listed.status.startswith(f"layout {runs.LAYOUT + 1}")


def test_a_layout_that_is_no_number_is_one_line(old_run, capsys):
    info = read.read_json(old_run / "run.json")
    (old_run / "run.json").write_text(json.dumps(info | {"layout": "two"}))
    assert evaluate.main([str(old_run)]) == 2
    assert "layout 'two' is not a layout number" in capsys.readouterr().err
    assert compare.read_run(old_run).status == "unreadable run.json"


def test_each_rule_upgrades_layout_1_and_leaves_todays_layout_as_it_is():
    old, new = "resnet_exp.gradflow.GradientFlow", "resnet_exp.callbacks.gradflow.GradientFlow"
    saved = [f"+callbacks.g._target_={old}", "model.depth=8"]
    assert migrate.overrides(saved, 1) == [f"+callbacks.g._target_={new}", "model.depth=8"]
    assert migrate.overrides(saved, runs.LAYOUT) == saved
    config = {"callbacks": {"g": {"_target_": old, "every": 5}},
              "extra": [{"_target_": "resnet_exp.data.CIFAR10"}]}
    assert migrate.config(config, 1) == {
        "callbacks": {"g": {"_target_": new, "every": 5}},
        "extra": [{"_target_": "resnet_exp.data.memory.CIFAR10"}]}
    assert migrate.config(config, runs.LAYOUT) == config
    logged = {"train/loss_epoch": [(1, 0.9)], "val/loss": [(1, 1.0)]}
    assert migrate.scalars(logged, 1) == {"train/loss": [(1, 0.9)], "val/loss": [(1, 1.0)]}
    assert migrate.scalars(logged, runs.LAYOUT) == logged
    both = {"train/loss_epoch": [(1, 0.9)], "train/loss": [(1, 0.8)]}
    assert migrate.scalars(both, 1) == both  # the run logged today's name too: it is the curve


def test_the_report_draws_an_old_runs_train_loss_from_its_old_tag(old_run):
    """Lightning's CSV log as a layout-1 run wrote it: the train loss as train/loss_epoch."""
    (old_run / runs.CSV_METRICS_FILE).parent.mkdir()
    (old_run / runs.CSV_METRICS_FILE).write_text(
        "epoch,step,train/loss_epoch,val/loss\n0,2,2.25,2.5\n1,5,2.0,2.125\n")
    run = compare.read_run(old_run)
    assert run.layout == 1 and run.done
    panels = compare.curve_panels([compare.Configuration({}, [run])])
    epochs, mean, std = panels["train/loss"]["all runs"]
    assert list(epochs) == [1, 2] and list(mean) == [2.25, 2.0] and std is None
    assert list(panels["val/loss"]["all runs"][1]) == [2.5, 2.125]


def test_an_old_runs_epochs_are_read_counted_from_one(old_run):
    """Layout 1 counted best_epoch from 0; today's readers (the report, reproduce, load) see it
    counted from 1, as the console and today's metrics.json count it."""
    from resnet_exp.runs import compare, migrate

    saved = json.loads((old_run / "metrics.json").read_text())["best_epoch"]
    assert migrate.read_metrics(old_run)["best_epoch"] == saved + 1
    assert compare.read_run(old_run).metrics["best_epoch"] == saved + 1
