"""The table a sweep prints at its end, for a sweep of long overrides (whose folder names ran to
729 characters, and so did each piped line of the table): piped, no line of the table is wider
than 200 characters; at widths 60, 80, 100 and 200 the table fits; at each, every swept value
and number shows whole (folded onto lines, never cut with "…") or its column is named as left
out, and each folder to look into prints whole on a line of its own."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from test_report_console import cells

from resnet_exp.core import console as consoles
from resnet_exp.core.config import short_value
from resnet_exp.runs import record, sweep_table

LONG = {"model": "resnet20_with_a_name_as_long_as_a_user_may_give_it_for_a_study_of_depth",
        "optimizer.lr": "0.0123456789123", "logger": "[tensorboard,mlflow,csv,wandb]",
        "augmentation.random_erasing_probability": "0.25",
        "+callbacks.early_stopping.min_delta": "0.000123456789"}
BOX = "┏┃┡│└"


def make_sweep(folder: Path) -> list[dict]:
    """Three jobs of LONG's keys, their folders named by Hydra's rule (number, then overrides),
    the last one failed; returns each job's overrides, seed included."""
    jobs = []
    for num in range(3):
        given = {k: f"{v}{num + 1}" if k != "logger" else v for k, v in LONG.items()} | {
            "seed": str(num)}
        overrides = [f"{k}={v}" for k, v in given.items()]
        job = folder / f"{num}_{','.join(overrides).replace('/', '_')}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text("".join(f"- '{o}'\n" for o in overrides))
        (job / ".hydra" / "config.yaml").write_text(f"seed: {num}\n")
        status = "failed" if num == 2 else "finished"
        record.write_json_atomic(job / "run.json", {
            "status": status, "seed": num,
            **({"error": "RuntimeError: CUDA out of memory\nTraceback ..."} if num == 2 else {})})
        if num < 2:
            record.write_json_atomic(job / "metrics.json", {"val/acc_best": 0.5 + num / 10,
                                                            "test/acc": 0.4 + num / 10})
        jobs.append({"job": job, **given})
    assert len(jobs[0]["job"].name) > 200
    return jobs


def check(text: str, width: int, jobs: list[dict]) -> None:
    assert "…" not in text
    lines = text.splitlines()
    assert max(len(line) for line in lines if line[:1] in BOX) <= width
    (header,) = cells([line for line in lines if line.startswith("┃")], "┃")
    rows = cells([line for line in lines if line.startswith("│")], "│")
    assert header[:2] == ["job", "status"] and "val/acc_best" in header
    assert [row[0] for row in rows] == ["0", "1", "2"]
    left = next((line for line in lines if line.startswith("left out to fit")), "")
    # each key that differs (a `+` that added it left out); logger= is the same in every job
    swept = {key.lstrip("+"): key for key in (*LONG, "seed") if key != "logger"}
    assert set(swept) <= set(header), header
    for row, job in zip(rows, jobs, strict=True):
        shown = dict(zip(header, row, strict=True))
        assert all(shown[k] == short_value(job[key]) for k, key in swept.items()), (shown, job)
    assert "test/acc" in header or "test/acc" in left, (header, left)
    # the best job and the failed one: each folder whole on a line of its own
    paths = [line.strip() for line in lines]
    assert str(jobs[1]["job"]) in paths and str(jobs[2]["job"]) in paths
    assert any(line.startswith("best: job 1, val/acc_best 0.6000") for line in paths)
    assert "job 2 failed: RuntimeError: CUDA out of memory" in paths


def test_a_piped_sweep_table_stays_within_200_characters(tmp_path, capsys):
    jobs = make_sweep(tmp_path / "sweep")
    assert not consoles.console.is_terminal  # console.py's piped console: as wide as its cells
    sweep_table.print_sweep(consoles.console, tmp_path / "sweep", "val/acc")
    text = capsys.readouterr().out
    check(text, sweep_table.PIPED_WIDTH, jobs)
    # every line but those holding a folder whole
    folders = {str(tmp_path / "sweep"), *(str(job["job"]) for job in jobs)}
    assert all(len(line) <= 200 for line in text.splitlines()
               if not any(f in line for f in folders)), text


@pytest.mark.parametrize("width", [60, 80, 100, 200])
def test_the_sweep_table_fits_each_width_and_cuts_nothing(tmp_path, width):
    jobs = make_sweep(tmp_path / "sweep")
    buffer = io.StringIO()
    sweep_table.print_sweep(Console(width=width, file=buffer), tmp_path / "sweep", "val/acc")
    check(buffer.getvalue(), width, jobs)


def test_a_sweep_that_fits_shows_test_accuracy_and_no_note(tmp_path):
    for num in range(2):
        job = tmp_path / f"{num}_seed={num}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- seed={num}\n")
        (job / ".hydra" / "config.yaml").write_text(f"seed: {num}\n")
        record.write_json_atomic(job / "run.json", {"status": "finished", "seed": num})
        record.write_json_atomic(job / "metrics.json", {"val/acc_best": 0.5, "test/acc": 0.25})
    buffer = io.StringIO()
    sweep_table.print_sweep(Console(width=80, file=buffer), tmp_path, "val/acc")
    text = buffer.getvalue()
    assert text.startswith(f"2 jobs in {tmp_path}\n")
    (header,) = cells([line for line in text.splitlines() if line.startswith("┃")], "┃")
    assert header == ["job", "status", "seed", "val/acc_best", "test/acc"]
    assert "left out" not in text
