"""What TensorBoard shows across several runs at once, served as `make tensorboard` serves them
(the Makefile's own --logdir_spec) and as the README says (`tensorboard --logdir outputs`, the
Rust data server): a run and a sweep laid out as outputs/runs and outputs/multirun, read back
through the real server's HTTP data API."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import ROOT, job_dirs
from test_tensorboard import LOADED_FIRST, get, post, serving

ALL_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def make_recipe() -> tuple[str, str]:
    """The Makefile's tensorboard recipe: the --logdir_spec it serves and the link it prints."""
    recipe = (ROOT / "Makefile").read_text().split("\ntensorboard:", 1)[1].split("\n\n", 1)[0]
    spec = re.search(r"--logdir_spec (\S+)", recipe).group(1)
    link = re.search(r"(http://[^\s\"]+)", recipe).group(1)
    return spec, link


@pytest.fixture(scope="module")
def outputs(smoke_run, smoke_sweep, tmp_path_factory) -> Path:
    """outputs/runs/run (the smoke run, with a lesion analysis written into it by the real
    command) and outputs/multirun/sweep (the smoke sweep: model.residual x seed)."""
    from resnet_exp import analyze

    root = tmp_path_factory.mktemp("served")
    run = root / "outputs" / "runs" / smoke_run.name
    shutil.copytree(smoke_run, run)
    assert analyze.main([str(run), "--lesion", "--images", "16"]) == 0
    shutil.copytree(smoke_sweep, root / "outputs" / "multirun" / smoke_sweep.name,
                    ignore=shutil.ignore_patterns("checkpoints"))
    return root


def groups_of(url: str) -> list[dict]:
    return post(url, "/data/plugin/hparams/session_groups", {
        "experimentName": "", "startIndex": 0, "sliceSize": 100,
        "allowedStatuses": ALL_STATUSES, "colParams": []})["sessionGroups"]


@pytest.fixture(scope="module", params=["make", "readme"])
def served(request, outputs):
    """The server's URL, with the run and every job of the sweep loaded."""
    spec = make_recipe()[0]
    args = {"make": ["--logdir_spec", spec, *LOADED_FIRST],
            "readme": ["--logdir", "outputs", "--reload_interval=1"]}[request.param]
    sessions = 1 + len(job_dirs(outputs / "outputs" / "multirun" / "sweep"))
    with serving(args, cwd=outputs) as url:
        # the Rust data server loads after it starts serving: bounded polling until all is in
        deadline = time.monotonic() + 120
        while len(groups_of(url)) < sessions or not any(
                t.endswith("/lesion") for ts in get(url, "/data/plugin/images/tags").values()
                for t in ts):
            assert time.monotonic() < deadline, "the runs never loaded"
            time.sleep(0.5)
        yield url


@pytest.mark.slow
def test_hparams_puts_the_settings_that_differ_across_the_served_runs_first(served):
    infos = post(served, "/data/plugin/hparams/experiment",
                 {"experimentName": "", "hparamsLimit": 1000})["hparamInfos"]
    names = [h["name"] for h in infos]
    values: dict[str, set] = {}
    for group in groups_of(served):  # a run without a setting has no value for it
        for name, value in group["hparams"].items():
            values.setdefault(name, set()).add(json.dumps(value))
    assert set(values) <= set(names), set(values) - set(names)  # every run's settings: columns
    marked = [h["name"] for h in infos if h.get("differs")]
    assert marked == names[:len(marked)], names  # what differs before what does not
    assert set(marked) == {n for n, v in values.items() if len(v) > 1}, values
    # what the sweep swept, and the model (the run's ResNet-20 against the sweep's VGG-8)
    assert {"model/residual", "seed", "choice/model"} <= set(marked), marked
    assert not {"choice/data", "optimizer/lr", "augmentation/flip"} & set(marked), marked


@pytest.mark.slow
def test_hparams_rows_are_named_as_their_run_folders(served, outputs):
    sweep = outputs / "outputs" / "multirun" / "sweep"
    names = {group["name"] for group in groups_of(served)}
    assert names == {"run", *(f"sweep/{job.name}" for job in job_dirs(sweep))}, names


@pytest.mark.slow
def test_hparams_metric_columns_are_the_runs_own_curves(served):
    metrics = post(served, "/data/plugin/hparams/experiment",
                   {"experimentName": ""})["metricInfos"]
    tags = [m["name"]["tag"] for m in metrics]
    assert {"val/acc_best", "test/acc", "test_last/acc"} <= set(tags), tags
    # no per-layer gradient scalars (a run beside the run's own, not below it), no epoch
    assert not any(m["name"].get("group") for m in metrics), metrics
    assert not any(t.startswith(("gradient_flow/", "epoch")) for t in tags), tags


@pytest.mark.slow
def test_time_series_groups_put_the_analyses_after_the_curves_in_the_run_itself(served):
    runs = get(served, "/data/runs")
    assert not any(r.endswith("/analysis") for r in runs), runs
    images = get(served, "/data/plugin/images/tags")
    (owner,) = [run for run, tags in images.items() if "why/lesion" in tags]
    assert owner.endswith("run/tensorboard"), owner  # the analysed run's own event folder
    tags = {t for kind in ("scalars", "images") for ts in get(
        served, f"/data/plugin/{kind}/tags").values() for t in ts}
    # TensorBoard orders tag groups by their first part, by character code (index.js, Qy; only
    # digits and "/" are compared otherwise, and no group name here has either)
    groups = sorted({t.split("/", 1)[0] for t in tags})
    assert "epoch" not in groups, groups
    assert groups.index("why") > groups.index("val") > groups.index("train"), groups


@pytest.mark.slow
def test_the_link_make_prints_pins_curves_every_run_logs(served):
    link = urlsplit(make_recipe()[1])
    assert (link.hostname, link.port, link.fragment) == ("127.0.0.1", 6006, "timeseries")
    cards = json.loads(parse_qs(link.query)["pinnedCards"][0])
    scalars = get(served, "/data/plugin/scalars/tags")
    curves = [tags for run, tags in scalars.items() if run.endswith("/tensorboard")]
    assert len(curves) == 5, sorted(scalars)
    for card in cards:  # the shape TensorBoard's deep link reads: no run for a scalars card
        assert set(card) == {"plugin", "tag"} and card["plugin"] == "scalars", card
        assert all(card["tag"] in tags for tags in curves), card
    assert {c["tag"] for c in cards} >= {"train/loss", "val/loss", "train/acc", "val/acc"}


def test_an_older_run_s_experiment_summary_can_be_dropped_and_nothing_else(tmp_path):
    """Runs written before this layout of HPARAMS each wrote an experiment summary, which would
    set the columns of every run served beside them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    from resnet_exp.loggers.tensorboard import drop_experiment_summary

    writer = SummaryWriter(str(tmp_path))  # what such a run wrote: curves, then torch's three
    for step in range(3):
        writer.add_scalar("val/acc", step / 4, step)
    for summary in hparams({"seed": 1, "choice/model": "resnet20"}, {"val/acc": 0.0}):
        writer.file_writer.add_summary(summary)
    writer.close()
    before = EventAccumulator(str(tmp_path)).Reload()
    assert "_hparams_/experiment" in before.summary_metadata

    assert drop_experiment_summary(tmp_path) == sorted(tmp_path.glob("events.out.tfevents.*"))
    after = EventAccumulator(str(tmp_path)).Reload()
    assert set(after.summary_metadata) == set(before.summary_metadata) - {"_hparams_/experiment"}
    start = "_hparams_/session_start_info"
    assert after.summary_metadata[start] == before.summary_metadata[start]
    assert after.Scalars("val/acc") == before.Scalars("val/acc")
    assert drop_experiment_summary(tmp_path) == []  # a second time finds nothing to drop
