"""A real TensorBoard server (loopback only) over a finished tiny run: what a user opens in the
browser is read back through the server's HTTP data API."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import pytest

TENSORBOARD = Path(sys.executable).with_name("tensorboard")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --reload_task=blocking with --reload_interval=0 loads every event file before the server
# starts: once it prints its address, the runs are there, and nothing polls for them
LOADED_FIRST = ["--load_fast=false", "--reload_task=blocking", "--reload_interval=0"]


@contextmanager
def serving(args: list[str], cwd: Path | None = None) -> Iterator[str]:
    """`tensorboard ARGS` on a free loopback port, in `cwd`, while the block runs: its URL."""
    if not TENSORBOARD.exists():
        pytest.skip(f"no tensorboard executable beside {sys.executable}")
    port = free_port()
    process = subprocess.Popen(
        [str(TENSORBOARD), *args, "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    hung = threading.Timer(600, process.kill)  # a bound for a hung server, not a speed test
    hung.start()
    try:
        said = []
        for line in process.stderr:  # blocks until the server speaks, or ends
            said.append(line)
            if f"at {url}/" in line:
                break
        else:
            pytest.fail(f"tensorboard exited before serving: {''.join(said)[-2000:]}")
        hung.cancel()
        # the rest of its log is read as it comes, so that a full pipe never stalls it
        threading.Thread(target=process.stderr.read, daemon=True).start()
        yield url
    finally:
        hung.cancel()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server(smoke_run):
    run = smoke_run  # trained with callbacks=study: every scalar and image a run logs
    logdir = run.parent
    name = f"{run.relative_to(logdir)}/tensorboard"
    with serving(["--logdir", str(logdir), *LOADED_FIRST]) as url:
        assert name in get(url, "/data/plugin/scalars/tags")
        yield url, name, run


def get(url: str, path: str, **query) -> dict | list:
    with urllib.request.urlopen(f"{url}{path}?{urlencode(query)}", timeout=10) as response:
        return json.load(response)


def post(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@pytest.mark.slow
def test_scalars_are_served_with_the_values_of_metrics_json(server):
    url, name, run = server
    tags = get(url, "/data/plugin/scalars/tags")
    for tag in ("train/loss", "train/acc", "val/acc", "val/loss", "test/acc",
                "test_last/acc", "time/epoch_s"):
        assert tag in tags[name], (tag, sorted(tags[name]))
    metrics = json.loads((run / "metrics.json").read_text())
    for tag in ("test/acc", "test_last/acc"):
        (point,) = get(url, "/data/plugin/scalars/scalars", run=name, tag=tag)
        assert point[2] == pytest.approx(metrics[tag], rel=1e-6)
    # gradient flow: a run of its own beside the main one, one tag per layer and statistic
    flow = tags[f"{run.name}/gradient_flow"]
    assert "gradient_flow/mean_abs/000_conv1" in flow and "gradient_flow/l2_norm/000_conv1" in flow
    assert not any(tag.startswith("gradient_flow/") for tag in tags[name])


@pytest.mark.slow
def test_images_are_served_as_pngs(server):
    url, name, _ = server
    tags = get(url, "/data/plugin/images/tags")[name]
    for tag in ("test/confusion_matrix", "test/predictions", "train/augmented_samples",
                "gradient_flow"):
        assert tag in tags, (tag, sorted(tags))
    (image,) = get(url, "/data/plugin/images/images", run=name, tag="test/confusion_matrix")
    with urllib.request.urlopen(f"{url}/data/plugin/images/individualImage?{image['query']}",
                                timeout=10) as response:
        png = response.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    assert width > 300 and height > 300


@pytest.mark.slow
def test_hparams_entry_names_the_choices_and_the_final_metrics_and_the_run(server):
    url, _, run = server
    experiment = post(url, "/data/plugin/hparams/experiment", {"experimentName": ""})
    hparams = [h["name"] for h in experiment["hparamInfos"]]
    assert {"choice/model", "choice/data", "seed", "optimizer/lr"} <= set(hparams), hparams
    # TensorBoard marks what differs among the runs it serves (here one: nothing), no run does
    assert not any(h.get("differs") for h in experiment["hparamInfos"]), experiment
    assert not any(h.startswith("hydra/") or h == "choice/experiment" for h in hparams), hparams
    metrics = [m["name"]["tag"] for m in experiment["metricInfos"]]
    assert {"val/acc_best", "test/acc", "test_last/acc", "val/acc", "train/loss",
            "time/total_s"} <= set(metrics), metrics
    # per-layer gradient scalars would be columns too, by name before the results
    assert not any(m.startswith(("gradient_flow/", "epoch")) for m in metrics), metrics
    groups = post(url, "/data/plugin/hparams/session_groups", {
        "experimentName": "", "startIndex": 0, "sliceSize": 10,
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                            "STATUS_RUNNING"],
        "colParams": [{"hparam": "choice/model"}, {"metric": {"tag": "test/acc"}},
                      {"metric": {"tag": "val/acc_best"}}],
    })
    (group,) = groups["sessionGroups"]
    assert group["name"] == run.name  # the Trial ID: the run folder, not its /tensorboard path
    assert group["hparams"]["choice/model"] == "resnet20"
    recorded = json.loads((run / "metrics.json").read_text())
    values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
    assert values["test/acc"] == pytest.approx(recorded["test/acc"])
    assert values["val/acc_best"] == pytest.approx(recorded["val/acc_best"])


@pytest.mark.slow
def test_the_time_series_page_has_only_the_run_s_own_groups(server):
    """No group of copies (hparams/...), no per-layer gradient scalars and no Lightning `epoch`
    among the curves of the run itself: they would sort before lr, test, train and val."""
    url, name, _ = server
    groups = {tag.split("/")[0] for tag in get(url, "/data/plugin/scalars/tags")[name]}
    assert groups <= {"train", "val", "test", "test_last", "lr", "time"}, groups
