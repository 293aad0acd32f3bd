"""`python -m resnet_exp.report`: the table over real runs, the files it writes, unfinished runs
kept apart, clear messages for folders without runs, and 200 runs at once."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import time
from pathlib import Path

import pytest
import yaml
from conftest import job_dir, job_dirs
from omegaconf import OmegaConf

from resnet_exp import report, runs
from resnet_exp.runs import record


@pytest.fixture(scope="module")
def sweep(smoke_sweep, tmp_path_factory):
    """The shared sweep (VGG08 with and without shortcuts, two seeds each, a few steps on the
    digits), copied, with a fifth job that failed."""
    cwd = tmp_path_factory.mktemp("report")
    folder = cwd / "sweep"
    shutil.copytree(smoke_sweep, folder)
    failed = folder / "4"
    shutil.copytree(job_dir(folder, 0), failed)
    (failed / runs.METRICS_FILE).unlink()
    info = json.loads((failed / runs.RUN_FILE).read_text())
    info.update(status="failed", error="RuntimeError: CUDA out of memory")
    (failed / runs.RUN_FILE).write_text(json.dumps(info))
    return cwd, folder


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_report_over_real_runs(sweep, capsys):
    cwd, folder = sweep
    out = cwd / "rep"
    assert report.main([str(folder), "--out", str(out), "--all"]) == 0
    printed = capsys.readouterr().out
    assert "2 configurations" in printed and "Runs not averaged" in printed

    expected: dict[str, list[float]] = {}
    for job in job_dirs(folder)[:4]:
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        residual = next(o.split("=")[1].lower() for o in overrides if "model.residual" in o)
        metrics = json.loads((job / runs.METRICS_FILE).read_text())
        expected.setdefault(residual, []).append(metrics["test/acc"])
        # per-class results of the best checkpoint's test, merged by train.py
        assert len(metrics["test/per_class"]) == 10
        assert set(metrics["test/per_class"]["3"]) == {"precision", "recall", "f1", "support"}

    rows = read_csv(out / "report.csv")
    assert [r["model.residual"] for r in rows] == ["false", "true"]
    for row in rows:
        values = expected[row["model.residual"]]
        assert row["n"] == "2"
        assert float(row["test/acc mean"]) == pytest.approx(statistics.fmean(values))
        assert float(row["test/acc std"]) == pytest.approx(statistics.stdev(values))
    # with --all the failed job is counted with its configuration, and not averaged in
    assert rows[0]["not averaged"] == "1 failed" and rows[1]["not averaged"] == ""
    statuses = sorted(r["status"] for r in read_csv(out / "runs.csv"))
    assert statuses == ["failed"] + ["finished"] * 4

    md = (out / "report.md").read_text()
    assert "| # | model.residual | n | test/acc |" in md
    assert "CUDA out of memory" in md and "`model=vgg08`" in md
    for name in ("curves.png", "sweep_model.residual.png", "gradient_flow.png"):
        assert f"]({name})" in md
        assert (out / name).stat().st_size > 10_000, name
        for vector in (".pdf", ".svg"):  # beside the PNG, for a paper
            assert (out / name).with_suffix(vector).stat().st_size > 5_000, name


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: None, "is not a run folder and holds none"),
        (lambda d: (d / runs.SWEEP_FILE).write_text("hydra: {}\n"), "sweep folder with no runs"),
    ],
    ids=["not-a-run", "empty-sweep"],
)
def test_folders_without_runs_give_a_clear_message(tmp_path, capsys, make, message):
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    make(folder)
    assert report.main([str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_missing_paths_and_empty_globs_are_named(tmp_path, capsys):
    assert report.main([str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err
    assert report.main([str(tmp_path / "x*")]) == 2
    assert "no folder matches this pattern" in capsys.readouterr().err


def fake_run(folder: Path, config: dict, overrides: list[str], status: str,
             metrics: dict | None) -> None:
    """A run folder in the real format, as train.py and Hydra leave it."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    choices = {"model": "vgg", "data": "digits"}
    (folder / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    seed = int(next(o for o in overrides if o.startswith("seed=")).split("=")[1])
    record.write_json_atomic(folder / runs.RUN_FILE, {
        "status": status, "seed": seed, "overrides": overrides,
        "error": None if status == "finished" else "stopped"})
    if metrics is not None:
        record.write_json_atomic(folder / runs.METRICS_FILE, metrics)


def test_200_runs(tmp_path, compose_cfg):
    """A depth x shortcut x seed study of 200 runs, 20 of them unfinished."""
    cfg = compose_cfg("model=vgg")
    config = OmegaConf.to_container(cfg, resolve=False)
    config.pop("hydra")
    sweep = tmp_path / "outputs" / "multirun" / "2026-01-01_00-00-00"
    expected: dict[tuple[str, str], list[float]] = {}
    job = 0
    for depth in (8, 20, 38, 56, 68):
        for residual in ("false", "true"):
            for seed in range(1, 21):
                acc = 0.5 + depth / 1000 * (1 if residual == "true" else -1) + seed / 1e4
                status = "finished"
                if job % 10 == 7:  # 20 runs that did not finish
                    status = ("failed", "interrupted", "running")[job // 10 % 3]
                overrides = ["model=vgg", f"model.depth={depth}", f"model.residual={residual}",
                             f"seed={seed}"]
                metrics = {"test/acc": acc, "test_last/acc": acc - 0.01, "val/acc_best": acc,
                           "best_epoch": seed % 5, "params/trainable": 1000 * depth}
                fake_run(sweep / str(job), config, overrides, status,
                         metrics if status == "finished" else None)
                if status == "finished":
                    expected.setdefault((str(depth), residual), []).append(acc)
                job += 1
    (sweep / runs.SWEEP_FILE).write_text("hydra: {}\n")

    started = time.perf_counter()
    out = report.report([str(tmp_path / "outputs")], tmp_path / "rep", everything=True)
    print(f"report over 200 runs: {time.perf_counter() - started:.2f} s")

    rows = read_csv(out / "report.csv")
    assert len(rows) == 10 and sum(len(v) for v in expected.values()) < 200
    for row in rows:
        values = expected[(row["model.depth"], row["model.residual"])]
        assert int(row["n"]) == len(values)
        assert float(row["test/acc mean"]) == pytest.approx(statistics.fmean(values))
        assert float(row["test/acc std"]) == pytest.approx(statistics.stdev(values))
    assert sum(int(r["n"]) for r in rows) + sum(
        int(part.split()[0]) for r in rows for part in r["not averaged"].split(", ") if part
    ) == 200
    for name in ("sweep_model.depth.png", "sweep_model.residual.png"):
        assert (out / name).is_file()


def test_transfer_runs_get_their_bars(tmp_path, compose_cfg):
    config = OmegaConf.to_container(compose_cfg("model=transfer"), resolve=False)
    config.pop("hydra")
    for i, mode in enumerate(("scratch", "feature_extract", "finetune") * 2):
        config["model"]["mode"] = mode
        fake_run(tmp_path / "runs" / str(i), config, [f"model.mode={mode}", f"seed={i // 3}"],
                 "finished", {"test/acc": 0.5 + i % 3 / 10, "best_epoch": 3,
                              "params/trainable": 5130 if i % 3 == 1 else 11_000_000})
    out = report.report([str(tmp_path / "runs")], tmp_path / "rep")
    assert [r["model.mode"] for r in read_csv(out / "report.csv")] == [
        "scratch", "feature_extract", "finetune"]
    assert (out / "transfer.png").stat().st_size > 10_000


def test_tag_keeps_the_runs_started_with_it_and_debug_runs_stay_out(tmp_path, compose_cfg):
    config = OmegaConf.to_container(compose_cfg("model=vgg"), resolve=False)
    config.pop("hydra")
    outputs = tmp_path / "outputs"
    for i, (tags, acc) in enumerate([(["baseline"], 0.5), (["baseline", "lr"], 0.6), ([], 0.7)]):
        fake_run(outputs / "runs" / str(i), config | {"tags": tags}, [f"seed={i}"], "finished",
                 {"test/acc": acc})
    fake_run(outputs / runs.DEBUG_DIR / "x", config, ["seed=9"], "finished", {"test/acc": 0.1})

    def accuracies(out: Path) -> list[float]:
        return sorted(float(r["test/acc mean"]) for r in read_csv(out / "report.csv"))

    everything = report.report([str(outputs)], tmp_path / "all", figures=False)
    assert sum(int(r["n"]) for r in read_csv(everything / "report.csv")) == 3  # no debug run
    tagged = report.report([str(outputs)], tmp_path / "b", figures=False, tags=["baseline"])
    assert sum(int(r["n"]) for r in read_csv(tagged / "report.csv")) == 2
    both = report.report([str(outputs)], tmp_path / "c", figures=False, tags=["baseline", "lr"])
    assert accuracies(both) == [0.6]
    with pytest.raises(report.UserError, match="the runs' tags are baseline, lr"):
        report.report([str(outputs)], tmp_path / "d", figures=False, tags=["nope"])
    debug = report.report([str(outputs / runs.DEBUG_DIR)], tmp_path / "e", figures=False)
    assert accuracies(debug) == [0.1]


METRICS_SHOWN = ("test/acc", "test_last/acc", "val/acc_best", "test/acc_top5", "test/loss")


def test_a_piped_report_keeps_every_cell_whole(tmp_path, compose_cfg, capsys):
    config = OmegaConf.to_container(compose_cfg("model=vgg"), resolve=False)
    config.pop("hydra")
    for i, model in enumerate(["resnet20", "resnet32"]):
        fake_run(tmp_path / "outputs" / str(i), config,
                 [f"model={model}", f"optimizer.lr=0.0123456789{i}", f"seed={i}"], "finished",
                 {name: 0.5 + i / 10 for name in METRICS_SHOWN})
    report.report([str(tmp_path / "outputs")], tmp_path / "rep", list(METRICS_SHOWN),
                  figures=False)
    out = capsys.readouterr().out  # not a terminal: no 80-column layout, nothing cut with "…"
    assert "resnet20" in out and "resnet32" in out and "…" not in out
    assert "0.01234567891" in out  # a long swept value, whole


def test_an_ablation_table_gives_each_rows_difference_to_its_baseline(tmp_path, compose_cfg):
    """--baseline trick=baseline: each (trick, model) row minus the baseline row of its model."""
    config = OmegaConf.to_container(compose_cfg("model=vgg"), resolve=False)
    config.pop("hydra")
    gain = {"baseline": 0.0, "mixup": 0.02, "ema": -0.01}
    base = {"resnet20": 0.90, "resnet56": 0.93}
    job = 0
    for trick in gain:
        for model in base:
            for seed in (1, 2, 3):
                acc = base[model] + gain[trick] + seed / 1000
                fake_run(tmp_path / "outputs" / str(job), config,
                         [f"model={model}", f"trick={trick}", f"seed={seed}"], "finished",
                         {"test/acc": acc})
                job += 1
    out = report.report([str(tmp_path / "outputs")], tmp_path / "rep", ["test/acc"],
                        figures=False, baseline="trick=baseline")
    rows = read_csv(out / "report.csv")
    assert len(rows) == 6
    for row in rows:
        assert float(row["test/acc mean"]) == pytest.approx(
            base[row["model"]] + gain[row["trick"]] + 0.002)
        assert float(row["test/acc - baseline"]) == pytest.approx(gain[row["trick"]])
    # t(0.975, 2) = 4.303: 0.952 ± 4.303 x 0.001 / sqrt(3)
    assert ("| 4 | resnet56 | mixup | 3 | 0.952 ± 0.001 [0.9495, 0.9545] | +0.02 |"
            in (out / "report.md").read_text())
    with pytest.raises(report.UserError, match="trick=none: no run has it|no run has trick=none"):
        report.report([str(tmp_path / "outputs")], tmp_path / "x", figures=False,
                      baseline="trick=none")
    with pytest.raises(report.UserError, match="lr is not a setting the runs differ in"):
        report.report([str(tmp_path / "outputs")], tmp_path / "y", figures=False,
                      baseline="lr=0.1")
