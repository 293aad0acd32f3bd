"""The run-folder contract: atomic files, honest statuses."""

from __future__ import annotations

import json
from unittest import mock

import pytest

from resnet_exp.core.errors import UserError
from resnet_exp.runs import read, record
from resnet_exp.runs.record import RunRecord


def test_json_is_replaced_atomically_and_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    record.write_json_atomic(path, {"a": 1})
    with mock.patch("json.dump", side_effect=OSError(28, "No space left on device")):
        with pytest.raises(OSError):
            record.write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left behind


def test_status_goes_running_then_finished_with_metrics_written_first(tmp_path):
    record = RunRecord(tmp_path / "run")
    record.start(seed=3)
    assert read.run_status(tmp_path / "run") == "running"
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["seed"] == 3 and info["packages"]["torch"] and info["device"]
    assert set(info["git"]) == {"commit", "dirty"}
    record.finish({"test/acc": 0.5})
    assert read.run_status(tmp_path / "run") == "finished"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == {"test/acc": 0.5}


def test_failed_and_unknown_folders(tmp_path):
    record = RunRecord(tmp_path)
    record.start(seed=0)
    record.end("failed", error="boom")
    assert read.run_status(tmp_path) == "failed"
    assert read.run_status(tmp_path / "elsewhere") is None
    (tmp_path / "run.json").write_text("{not json")
    assert read.run_status(tmp_path) is None


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [(KeyboardInterrupt(), "interrupted", None), (SystemExit(143), "interrupted", None),
     (UserError("data.root is wrong"), "failed", "data.root is wrong"),
     (ValueError("boom"), "failed", "ValueError: boom")],
)
def test_recording_sets_the_status_from_how_the_block_ends(tmp_path, error, status, message):
    record = RunRecord(tmp_path)
    record.start(seed=0)
    with pytest.raises(type(error)), record.recording():
        raise error
    info = json.loads((tmp_path / "run.json").read_text())
    assert (info["status"], info["error"]) == (status, message)
    assert not (tmp_path / "metrics.json").exists()


def test_a_ctrl_c_during_a_write_waits_until_the_file_is_whole(tmp_path):
    """The signal arrives while the file is written (sent by the writer itself: no timing); the
    file is complete, nothing temporary is left, and the KeyboardInterrupt comes after."""
    import os
    import signal

    from resnet_exp.runs.atomic import atomic_write

    def write(f) -> None:
        f.write("first half ")
        os.kill(os.getpid(), signal.SIGINT)
        f.write("second half")

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "whole.txt", write)
    assert (tmp_path / "whole.txt").read_text() == "first half second half"
    assert [p.name for p in tmp_path.iterdir()] == ["whole.txt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
