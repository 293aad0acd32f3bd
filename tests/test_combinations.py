"""Options that each work alone, tested together: Lightning's progress-bar switch with every
callbacks option, override values in brackets with every table rich prints, and the benchmark's
parts with the config tree as it is now. Each reads what the command printed and wrote: an exit
status of 0 proves little."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF, ONE_THREAD, ROOT, job_dirs, run_cli, single_run_dir
from hydra.utils import instantiate

from resnet_exp.callbacks.display import EpochLines

CALLBACKS = sorted(path.stem for path in (CONF / "callbacks").glob("*.yaml"))
# Lightning's enable_progress_bar, as a cluster's job script sets it (`+`: not in conf/trainer/)
SWITCH = {"unset": [], "on": ["+trainer.enable_progress_bar=true"],
          "off": ["+trainer.enable_progress_bar=false"]}


@pytest.mark.parametrize("switch", SWITCH)
@pytest.mark.parametrize("callbacks", CALLBACKS)
def test_every_callbacks_option_takes_the_progress_bar_switch(compose_cfg, callbacks, switch):
    cfg = compose_cfg(f"callbacks={callbacks}", *SWITCH[switch])
    built = [instantiate(node) for node in cfg.callbacks.values() if node]
    # the Trainer refuses a progress-bar callback with the switch off, and adds its own bar
    # with it on where the callbacks have none
    trainer = instantiate(cfg.trainer, callbacks=[c for c in built if c is not None],
                          logger=False)
    assert (trainer.progress_bar_callback is None) == (switch == "off")
    # the line per epoch stays without a bar: a cluster's log still shows the run going
    quiet = cfg.callbacks.progress_bar.get("quiet", False)
    lines = [c for c in trainer.callbacks if isinstance(c, EpochLines)]
    assert len(lines) == (0 if quiet else 1), trainer.callbacks


@pytest.mark.slow
def test_a_run_without_a_progress_bar_finishes_and_prints_each_epoch(tmp_path):
    # the figure callbacks left out: 9 of a smoke run's 12 CPU seconds, and no bar of their own
    result = run_cli(["trainer=smoke", "trainer.max_epochs=2", "+trainer.enable_progress_bar=false",
                      "~callbacks.per_class", "~callbacks.augmented_samples"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    info = json.loads((single_run_dir(tmp_path) / "run.json").read_text())
    assert info["status"] == "finished"
    epochs = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert epochs == ["1/2", "2/2"], result.stdout[-3000:]


def _rendered(renderable) -> str:
    """What rich prints of `renderable`, with its colours as ANSI codes."""
    from rich.console import Console

    out = Console(file=io.StringIO(), width=300, record=True, color_system="standard")
    out.print(renderable)
    return out.export_text(styles=True)


@pytest.mark.parametrize("width", [60, 80, 100, 200, None])  # None: piped to a file
def test_a_run_summary_cuts_no_number_name_or_place_at_any_width(monkeypatch, width):
    """The summary at the widths a terminal has, and piped: every metric name and value whole,
    and each place (the run folder, an MLflow URL) whole on a line of its own, for copying."""
    from rich.console import Console

    from resnet_exp.core import console

    out = io.StringIO()
    monkeypatch.setattr(console, "console", Console(file=out, width=width or 80,
                                                     force_terminal=width is not None,
                                                     color_system=None))
    folder = "/home/someone/projects/study/outputs/runs/2026-12-07_06-42-59_resnet20_digits"
    url = "http://127.0.0.1:5000/#/experiments/1/runs/0123456789abcdef0123456789abcdef"
    rows = {"test/acc": 0.965277, "test_last/acc_top5": 0.99312, "time": "61.2 s"}
    console.print_summary("resnet20_digits: finished", rows,
                          {"run folder": folder, "MLflow run": url})
    text = out.getvalue()
    lines = [line.strip() for line in text.splitlines()]
    assert f"run folder: {folder}" in lines and f"MLflow run: {url}" in lines, text
    assert "…" not in text
    flat = "".join(line.strip("│┃ ") for line in lines)  # a folded cell reads on, line by line
    for key, value in (("test/acc", "0.9653"), ("test_last/acc_top5", "0.9931")):
        assert key in flat.replace(" ", "") and value in flat, text


def test_a_table_prints_values_in_brackets_as_given():
    from rich.table import Table
    from rich.text import Text

    from resnet_exp.core import console

    folder = "outputs/multirun/x/0_logger=[tensorboard,mlflow],model=resnet20"
    text = _rendered(console.summary_table("name=[a]: finished", {"run folder": folder}))
    assert folder in text and "name=[a]: finished" in text, text
    table = Table()
    table.add_column("status")
    console.add_row(table, Text("finished", style="green"))  # a styled cell keeps its style
    assert "\x1b[32mfinished" in _rendered(table)


@pytest.fixture(scope="module")
def bracketed_sweep(tmp_path_factory):
    """Two jobs that differ in a list-valued choice: `logger=[tensorboard,csv]` and
    `logger=tensorboard` (csv rather than MLflow: the same brackets, seconds faster)."""
    cwd = tmp_path_factory.mktemp("bracketed")
    result = run_cli(["-m", "trainer=smoke", "callbacks=lean",
                      "logger=[tensorboard,csv],tensorboard", "hydra.sweep.dir=sweep"], cwd,
                     timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, cwd / "sweep"


def _cells(stdout: str) -> list[list[str]]:
    """The rows of the tables rich printed, each a list of its cells."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in stdout.splitlines()
            if line.startswith("│")]


@pytest.mark.slow
def test_a_sweep_prints_a_bracketed_override_as_given(bracketed_sweep):
    result, sweep = bracketed_sweep
    folder = job_dirs(sweep)[0].name  # Hydra names it by the overrides, brackets and all
    assert "logger=[tensorboard,csv]" in folder, folder
    assert "overrides: trainer=smoke callbacks=lean logger=[tensorboard,csv]" in result.stdout
    # the job's own summary ends with its folder, whole on a line of its own; the sweep's
    # table names the job by its number (runs/sweep_table.py) and shows the value as given
    assert any(line.startswith("run folder: ") and line.endswith(folder)
               for line in result.stdout.splitlines()), result.stdout[-3000:]
    (job,) = [row for row in _cells(result.stdout) if row[0] == "0"]
    assert "[tensorboard,csv]" in job and "finished" in job, job


@pytest.mark.slow
def test_the_report_prints_a_bracketed_value_as_given(bracketed_sweep, tmp_path):
    _, sweep = bracketed_sweep
    result = run_cli([str(sweep), "--no-figures", "--out", str(tmp_path / "report")], tmp_path,
                     module="resnet_exp.report")
    assert result.returncode == 0, result.stderr[-3000:]
    labels = {row[1] for row in _cells(result.stdout)}  # row[0] is the row number (#)
    assert {"[tensorboard,csv]", "tensorboard"} <= labels, result.stdout[-3000:]
    assert "| [tensorboard,csv] |" in (tmp_path / "report" / "report.md").read_text()


def _bench_parts() -> tuple[str, ...]:
    spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # its top level imports the standard library alone
    return bench.PARTS


@pytest.mark.slow
def test_every_part_of_the_bench_runs_to_its_table(tmp_path):
    """`make bench` on a budget of a few steps, synthetic data and batches of 16: each part must
    reach its table, the memory part through its fresh processes too. The compile part is left
    out: compiling ResNet-20 takes ~70 s on this 2-core CPU."""
    parts = [part for part in _bench_parts() if part != "compile"]
    out = tmp_path / "bench.json"
    command = [sys.executable, "scripts/bench.py", "--synthetic", "--work", str(tmp_path),
               "--parts", ",".join(parts), "--rounds", "1", "--seconds", "0.01", "--depths", "",
               "--probe-steps", "1", "--startup-runs", "1", "--override", "data.batch_size=16",
               "--override", "data.eval_batch_size=16", "--json", str(out)]
    # this checkout's package in the bench and in the memory probes it starts, as run_cli's
    env = {**os.environ, "PYTHONPATH": str(ROOT), **ONE_THREAD}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert list(results) == parts
    assert all(results[part] for part in parts), results
    assert all(row["framework"] > 0 for row in results["memory"]), results["memory"]


def test_class_names_and_run_folders_print_as_given(tmp_path, capsys):
    """A per-class table's class names and a reproduction's folders hold `[...]` as given."""
    from rich.console import Console

    from resnet_exp.callbacks.perclass import KEY, PerClassMetrics
    from resnet_exp.reproduce import print_comparison

    callback = PerClassMetrics(output_dir=str(tmp_path))
    callback.prefix = "test"
    callback.run_metrics = {f"test/{KEY}": {"[cls]": {"precision": 1.0, "recall": 1.0, "f1": 1.0,
                                                      "support": 3}}}
    recorder = Console(record=True, width=200)
    recorder.print(callback._make_table(["[cls]"]))
    assert "[cls]" in recorder.export_text()
    print_comparison(Path("runs/[x]"), Path("new/[y]"), {"test/acc": 1.0}, {"test/acc": 1.0})
    out = capsys.readouterr().out
    assert "runs/[x]" in out and "new/[y]" in out


@pytest.mark.parametrize(("max_epochs", "shown"), [(15, ["Epoch 1/15", "Epoch 15/15"]),
                                                   (-1, ["Epoch 1", "Epoch 15"])])
def test_the_terminal_bar_counts_epochs_from_one_as_the_lines_and_summary_do(max_epochs, shown):
    from types import SimpleNamespace

    from resnet_exp.callbacks.display import EpochBar

    bar = EpochBar()
    bar._trainer = SimpleNamespace(max_epochs=max_epochs)  # what the Trainer sets at setup
    assert [bar._get_train_description(e).strip() for e in (0, 14)] == shown


@pytest.mark.slow
def test_the_default_run_fits_its_first_screen_and_says_nothing_twice(tmp_path):
    """Piped, as a job's log: the group choices, then the training within 40 lines; none of
    Lightning's set-up lines a CPU run cannot act on; the config tree only when asked for."""
    result = run_cli(["trainer=smoke", "trainer.max_epochs=2"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (result.stdout + result.stderr).splitlines()
    first_epoch = next(i for i, line in enumerate(lines) if line.startswith("epoch 1/2"))
    assert first_epoch < 40, "\n".join(lines[:first_epoch + 1])
    assert lines[0].startswith("config: data=digits") and "model=resnet20" in lines[0]
    for note in ("GPU available: False", "TPU available", "Seed set to", "Restoring states",
                 "Loaded model weights", "├── data"):
        assert not any(note in line for line in lines), note
    assert "run folder: " + str(single_run_dir(tmp_path)) in lines
