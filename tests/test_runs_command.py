"""`python -m resnet_exp.runs list|show|clean` (resnet_exp/runs/__main__.py) on real run folders:
copies of the shared finished smoke run, each left as a failed, interrupted, killed (stale) or
still-running run leaves its run.json, and a sweep of two such jobs."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from conftest import ONE_THREAD, ROOT
from rich.console import Console

from resnet_exp.core import console as ui
from resnet_exp.runs import METRICS_FILE, OVERRIDES_FILE, RUN_FILE, SWEEP_FILE, record
from resnet_exp.runs.__main__ import main

RUNS = Path("outputs/runs")
SWEEP = Path("outputs/multirun/2026-01-05_09-00-00")
ERROR = "UserError: data.root=/nowhere holds no digits"


def fork(smoke_run: Path, folder: Path, days: float, status: str = "finished",
         **fields) -> Path:
    """A copy of the finished run, as a run of `status` started `days` ago leaves its folder:
    only a finished run has metrics.json; a killed one (running) has no end time either."""
    shutil.copytree(smoke_run, folder)
    info = json.loads((folder / RUN_FILE).read_text())
    start = datetime.now().astimezone() - timedelta(days=days)
    info.update(status=status, start_time=start.isoformat(timespec="seconds"),
                end_time=None if status == "running" else
                (start + timedelta(minutes=1)).isoformat(timespec="seconds"),
                error=ERROR if status == "failed" else None, **fields)
    (folder / RUN_FILE).write_text(json.dumps(info))
    if status != "finished":
        (folder / METRICS_FILE).unlink()
    return folder


@pytest.fixture
def outputs(smoke_run, tmp_path, monkeypatch) -> dict[str, Path]:
    """An outputs/ folder of every kind of run, as paths relative to the working folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / SWEEP).mkdir(parents=True)
    (tmp_path / SWEEP / SWEEP_FILE).write_text("hydra: {}\n")
    made = {
        "finished": fork(smoke_run, RUNS / "2026-01-01_10-00-00_resnet20_digits", 10,
                         tags=["baseline"]),
        "failed": fork(smoke_run, RUNS / "2026-01-02_10-00-00_resnet56_cifar10", 2, "failed",
                       name="resnet56_cifar10"),
        "interrupted": fork(smoke_run, RUNS / "2026-01-03_10-00-00_resnet20_digits", 0.125,
                            "interrupted"),
        "stale": fork(smoke_run, RUNS / "2026-01-04_10-00-00_resnet20_digits", 1.5, "running"),
        "live": fork(smoke_run, RUNS / "2026-01-05_10-00-00_resnet20_digits", 20, "running"),
        "job0": fork(smoke_run, SWEEP / "0_model=resnet20,seed=1", 5,
                     overrides=["model=resnet20", "seed=1"]),
        "job1": fork(smoke_run, SWEEP / "1_logger=[tensorboard,csv],seed=2", 5, "failed",
                     overrides=["logger=[tensorboard,csv]", "seed=2"]),
    }
    for job in ("job0", "job1"):  # what Hydra saved: the job's own overrides
        overrides = json.loads((made[job] / RUN_FILE).read_text())["overrides"]
        (made[job] / OVERRIDES_FILE).write_text(yaml.safe_dump(overrides))
    return made


@pytest.fixture
def live(outputs):
    """The `live` run's folder held as a training process holds it (record.lock)."""
    with record.lock(outputs["live"]):
        yield outputs["live"]


def printed(monkeypatch, *argv: str, width: int = 200) -> tuple[int, str]:
    """main(ARGV)'s status and what it printed on a console `width` columns wide."""
    buffer = io.StringIO()
    monkeypatch.setattr(ui, "console", Console(file=buffer, width=width))
    return main(list(argv)), buffer.getvalue()


def listed(text: str) -> list[str]:
    """The run folders a list (or clean's plan) printed, in order: each on a line of its own."""
    return [line.strip() for line in text.splitlines() if line.startswith("  outputs/")]


def existing(outputs: dict[str, Path]) -> set[str]:
    return {kind for kind, path in outputs.items() if path.exists()}


@pytest.mark.parametrize("width", [60, 80, 100, 200])
def test_list_prints_every_folder_whole_newest_first(outputs, live, monkeypatch, width):
    status, text = printed(monkeypatch, "list", width=width)
    assert status == 0
    assert "…" not in text
    by_age = ["interrupted", "stale", "failed", "job0", "job1", "finished", "live"]
    assert listed(text)[:2] == [str(outputs[k]) for k in by_age[:2]]
    assert set(listed(text)) == {str(p) for p in outputs.values()}
    header, *rows = [line for line in text.splitlines() if not line.startswith("  outputs/")]
    for word in ("finished", "failed", "interrupted", "stale", "running", "resnet56_cifar10",
                 "logger=[tensorboard,csv]", "7 runs under outputs"):
        assert word in text, word
    if width >= 80:  # at 60 a row holding logger=[tensorboard,csv] is wider: the terminal folds it
        assert all(len(line) <= width for line in text.splitlines()
                   if not line.startswith("  outputs/")), text
    if width >= 100:
        assert header.split() == ["status", "name", "settings", "test/acc", "val/acc_best",
                                  "age", "size"]
    else:
        assert "left out at" in text and "size" not in header


def test_list_piped_and_as_resnet_exp_runs(outputs, monkeypatch):
    result = subprocess.run([sys.executable, "-m", "resnet_exp.runs", "list"], text=True,
                            capture_output=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **ONE_THREAD})
    assert result.returncode == 0, result.stderr
    assert set(listed(result.stdout)) == {str(p) for p in outputs.values()}
    assert "…" not in result.stdout and "left out" not in result.stdout
    from resnet_exp.__main__ import cli

    buffer = io.StringIO()
    monkeypatch.setattr(ui, "console", Console(file=buffer, width=80))
    monkeypatch.setattr(sys, "argv", ["resnet-exp", "runs", "list", "--status", "failed"])
    with pytest.raises(SystemExit) as exit:
        cli()
    assert exit.value.code == 0
    assert set(listed(buffer.getvalue())) == {str(outputs["failed"]), str(outputs["job1"])}


@pytest.mark.parametrize("args, kinds", [
    (["--status", "failed"], {"failed", "job1"}),
    (["--status", "stale"], {"stale"}),
    (["--status", "running"], {"live"}),
    (["--status", "finished", "--status", "interrupted"], {"finished", "interrupted", "job0"}),
    (["--tag", "baseline"], {"finished"}),
    (["--name", "*resnet56*"], {"failed"}),
    (["--name", "1_*"], {"job1"}),
    (["outputs/multirun", "--status", "failed"], {"job1"}),
])
def test_list_filters(outputs, live, monkeypatch, args, kinds):
    status, text = printed(monkeypatch, "list", *args)
    assert status == 0
    assert set(listed(text)) == {str(outputs[k]) for k in kinds}


def test_list_says_when_nothing_matches(outputs, monkeypatch):
    assert printed(monkeypatch, "list", "--tag", "nope") == (
        0, "none of the 7 runs under outputs matches\n")


def test_clean_failed_deletes_exactly_what_it_listed(outputs, live, monkeypatch):
    status, text = printed(monkeypatch, "clean", "--failed", "--yes", width=80)
    assert status == 0, text
    assert set(listed(text)) == {str(outputs["failed"]), str(outputs["job1"])}
    assert existing(outputs) == set(outputs) - {"failed", "job1"}
    assert (SWEEP / SWEEP_FILE).is_file()  # its other job is still there
    assert "2 runs to delete" in text and "deleted 2 runs" in text


def test_clean_never_touches_a_live_run_and_a_stale_one_only_by_name(outputs, live,
                                                                     monkeypatch):
    status, text = printed(monkeypatch, "clean", "--older-than", "1d", "--yes")
    assert status == 0, text
    assert existing(outputs) == {"live", "stale", "interrupted"}
    assert not SWEEP.exists()  # gone with its last job, as the plan said
    plan = text.split("left alone")[0]
    assert f"sweep folders left with no job:\n  {SWEEP}\n" in plan
    assert str(outputs["live"]) not in plan and str(outputs["stale"]) in text

    status, text = printed(monkeypatch, "clean", "--stale", "--older-than", "12h", "--yes")
    assert status == 0, text
    assert existing(outputs) == {"live", "interrupted"}


def test_clean_leaves_a_run_that_a_process_took_since_it_was_listed(outputs, monkeypatch):
    # a resume of the failed run: it holds the folder before run.json says running again
    with record.lock(outputs["failed"]):
        status, text = printed(monkeypatch, "clean", "--failed", "--yes")
    assert status == 1
    assert f"not deleted (a process writes in it now): {outputs['failed']}" in text
    assert existing(outputs) == set(outputs) - {"job1"}


def test_clean_refuses_without_a_terminal_or_yes(outputs, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    status, text = printed(monkeypatch, "clean", "--failed")
    assert status == 2 and text == ""
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--yes" in error, error
    assert existing(outputs) == set(outputs)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer, kept", [("n\n", {"failed", "job1"}), ("", {"failed", "job1"}),
                                          ("y\n", set())])
def test_clean_asks_on_a_terminal(outputs, monkeypatch, answer, kept):
    monkeypatch.setattr(sys, "stdin", Terminal(answer))
    status, text = printed(monkeypatch, "clean", "--failed")
    assert "delete them? [y/N]" in text
    assert status == (1 if kept else 0)
    assert existing(outputs) == set(outputs) - {"failed", "job1"} | kept


def test_clean_needs_a_selection(outputs, monkeypatch, capsys):
    assert printed(monkeypatch, "clean", "--yes")[0] == 2
    assert "--failed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        main(["clean", "--older-than", "7x"])
    assert exit.value.code == 2 and "h, d or w" in capsys.readouterr().err
    assert existing(outputs) == set(outputs)


@pytest.mark.parametrize("width", [60, 200])
def test_show_a_finished_run(outputs, monkeypatch, width):
    run = outputs["finished"]
    status, text = printed(monkeypatch, "show", str(run), width=width)
    assert status == 0 and "…" not in text
    metrics = json.loads((run / METRICS_FILE).read_text())
    lines = text.splitlines()
    assert lines[0] == str(run) and lines[1].split() == ["status", "finished"]
    assert "  test/acc" in text and f"{metrics['test/acc']:.4f}" in text
    assert "checkpoints/" in text and "best.ckpt, last.ckpt" in text and "figures/" in text
    assert f"eval       python -m resnet_exp.eval {run}" in lines
    assert f"reproduce  python -m resnet_exp.reproduce {run}" in lines
    assert "resume" not in text and "error" not in text


def test_show_a_failed_sweep_job(outputs, monkeypatch):
    job = outputs["job1"]
    status, text = printed(monkeypatch, "show", str(job), width=80)
    assert status == 0
    assert f"error      {ERROR}" in text.splitlines()
    assert "overrides  logger=[tensorboard,csv] seed=2" in text
    assert "metrics    none: metrics.json is written when a run finishes" in text
    (resume,) = [line for line in text.splitlines() if line.startswith("resume")]
    assert shlex.split(resume)[1:] == ["python", "-m", "resnet_exp", f"resume={job}"]


def test_show_refuses_a_folder_that_is_no_run(outputs, monkeypatch, capsys):
    assert printed(monkeypatch, "show", "outputs/multirun")[0] == 2
    assert "is not a run folder" in capsys.readouterr().err


def _with_experiment_summary(run: Path) -> None:
    """What runs of earlier versions wrote besides their session: TensorBoard's experiment
    summary, with which TensorBoard takes that run's columns for every run it serves."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    writer = SummaryWriter(str(run / "tensorboard"))
    writer.file_writer.add_summary(hparams({"seed": 1}, {"val/acc": 0.0})[0])
    writer.close()


def _events(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return EventAccumulator(str(run / "tensorboard")).Reload()


def _has_experiment_summary(run: Path) -> bool:
    return "_hparams_/experiment" in _events(run).summary_metadata


def test_upgrade_drops_old_experiment_summaries_but_not_in_a_live_run(outputs, live,
                                                                       monkeypatch):
    old = [outputs[k] for k in ("finished", "job0", "live")]
    for run in old:
        _with_experiment_summary(run)
    curves = [(e.step, e.value) for e in _events(outputs["finished"]).Scalars("val/acc")]
    status, text = printed(monkeypatch, "upgrade")
    assert status == 0
    assert [_has_experiment_summary(run) for run in old] == [False, False, True]
    assert f"left alone {live} (a process writes in it)" in text
    assert "2 of 7 runs rewritten" in text
    assert curves and [(e.step, e.value)
                       for e in _events(outputs["finished"]).Scalars("val/acc")] == curves
    status, text = printed(monkeypatch, "upgrade")  # nothing left to rewrite
    assert "0 of 7 runs rewritten" in text
