"""A run folder written before the package was regrouped (flat modules: resnet_exp.guards,
resnet_exp.gradflow, ...) still evaluates, reproduces and resumes, without `--trust` and
without a config-drift warning about a moved class: its saved import paths are read under
today's names.

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

from resnet_exp import eval as evaluate
from resnet_exp import reproduce
from resnet_exp.runs import read, replay, trust

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
        assert replay.canonical(old) != old


def test_every_moved_path_imports_under_its_new_name():
    from hydra.utils import get_class

    for new in replay.MOVED.values():
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
