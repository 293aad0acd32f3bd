"""A careless or hostile user: run folders that name code, runs that would overwrite each other,
moved folders and late kills, and malformed inputs. Each case is a regression test: nothing runs
that was not asked for, nothing is lost, and every bad input is one line on stderr with exit
status 2.
"""

from __future__ import annotations

import errno
import shutil
import socket
import threading
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
from conftest import refusal, resumed, run_cli
from omegaconf import OmegaConf

from resnet_exp import eval as evaluate
from resnet_exp import reproduce, runs
from resnet_exp.core import config
from resnet_exp.core.errors import UserError
from resnet_exp.data import CIFAR10
from resnet_exp.data import memory as data_memory
from resnet_exp.runs import atomic, hydra_hooks, read, record, resume, trust

TINY = ["trainer=smoke", "deterministic=true", "callbacks=lean"]


@pytest.fixture
def run(smoke_run_copy) -> Path:
    """A copy of the shared finished run (conftest.SMOKE_RUN, 2 epochs) to damage."""
    return smoke_run_copy


def with_overrides(run: Path, *extra: str) -> Path:
    saved = [*OmegaConf.load(run / runs.OVERRIDES_FILE), *extra]
    OmegaConf.save(OmegaConf.create(saved), run / runs.OVERRIDES_FILE)
    return run


def one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr[-3000:]



# -- 1, 2: a foreign run folder runs no code without --trust -------------------------------------

CODE_RUNNERS = [
    "torch.utils.collect_env.run", "torch._inductor.codecache.PyCodeCache.load",
    "torchvision.io.write_file", "torch.save", "torch.testing._internal.common_utils.shell",
    "torch.jit._serialization.load", "pytorch_lightning.LightningModule.load_from_checkpoint",
    "resnet_exp.runs.atomic.write_json_atomic", "resnet_exp.training.checkpoints.save",
]


@pytest.mark.parametrize("target", CODE_RUNNERS)
def test_code_runners_inside_allowed_packages_are_not_allowed(target):
    assert not trust.allowed(target)


@pytest.mark.slow
def test_a_shell_command_in_saved_overrides_runs_on_no_replay(run, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    with_overrides(run, "+callbacks.evil._target_=torch.utils.collect_env.run",
                   f"+callbacks.evil.command='touch {marker}'")
    assert reproduce.main([str(run)]) == 2
    assert evaluate.main([str(run)]) == 2
    with pytest.raises(UserError, match="torch.utils.collect_env.run.*--trust"):
        resume.command_line(["resnet_exp", f"resume={run}"])
    assert "callbacks.evil._target_=torch.utils.collect_env.run" in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.slow
def test_a_group_option_outside_the_config_tree_is_refused_unless_trusted(run, tmp_path):
    evil = tmp_path / "elsewhere" / "evil.yaml"
    evil.parent.mkdir()
    evil.write_text("# @package _global_\nhydra:\n  callbacks:\n    copy:\n"
                    "      _target_: shutil.copyfile\n")
    relative = Path("..", "..", "..", "..", *evil.parent.parts[1:], "evil")
    with_overrides(run, f"+experiment={relative.as_posix()}")
    with pytest.raises(UserError, match="outside conf/.*--trust"):
        resume.command_line(["resnet_exp", f"resume={run}"])
    with pytest.raises(UserError, match="outside conf/"):
        evaluate.evaluate(run, [])


def test_the_hydra_node_is_checked_too():
    cfg = OmegaConf.create({"hydra": {"callbacks": {"copy": {"_target_": "shutil.copyfile"}},
                                      "job_logging": {"handlers": {"x": {"()": "os.system"}}}},
                            "model": {"_target_": "resnet_exp.models.resnet.CifarResNet"}})
    assert [key for key, _ in trust.untrusted(cfg)] == ["hydra.callbacks.copy._target_",
                                                        "hydra.job_logging.handlers.x.()"]


SHIPPED = ([[f"experiment={p.stem}"] for p in sorted((config.CONF_DIR / "experiment").glob("*"))]
           + [[f"{group}={p.stem}"] for group in config.GROUPS
              if group not in ("experiment",) for p in sorted((config.CONF_DIR / group).glob("*"))]
           + [["hydra/launcher=slurm"], ["hydra/launcher=joblib"],
              ["hydra/launcher=submitit_local"]])


@pytest.mark.parametrize("overrides", SHIPPED, ids=[o[0] for o in SHIPPED])
def test_every_shipped_config_replays_without_trust(overrides, tmp_path):
    cfg = config.compose([*overrides], tmp_path, with_hydra=True)
    trust.check(cfg, source="the shipped conf/ tree")


# -- 3, 4, 5: run folders are exclusive -----------------------------------------------------------

def test_two_runs_claiming_one_default_folder_get_two_folders(tmp_path):
    folder = tmp_path / "outputs" / "runs" / "2026-01-01_00-00-00_resnet20_digits"
    first = hydra_hooks.claim(folder, runs.RUN_FILE, explicit=False, key="hydra.run.dir")
    second = hydra_hooks.claim(folder, runs.RUN_FILE, explicit=False, key="hydra.run.dir")
    assert (first, second) == (folder, folder.with_name(folder.name + "_2"))
    sweep = hydra_hooks.claim(tmp_path / "sweep", runs.SWEEP_FILE, False, "hydra.sweep.dir")
    again = hydra_hooks.claim(tmp_path / "sweep", runs.SWEEP_FILE, False, "hydra.sweep.dir")
    assert again == tmp_path / "sweep_2" and sweep == tmp_path / "sweep"
    with pytest.raises(UserError, match="holds a run already.*resume="):
        hydra_hooks.claim(folder, runs.RUN_FILE, explicit=True, key="hydra.run.dir")


@pytest.mark.slow
def test_an_existing_run_folder_is_never_written_into(run, in_tmp, capsys):
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    line = refusal(capsys, TINY, output_dir=run)
    assert "holds a run already" in line and f"resume={run}" in line
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("name", ["../../victim", "../../../../x", "a/b", ".hidden"])
def test_a_name_that_leaves_the_runs_folder_is_refused(tmp_path, name):
    result = run_cli([*TINY, f"name={name}"], tmp_path)
    one_line_error(result, f"name={name}")
    assert not list(tmp_path.rglob("run.json"))


@pytest.mark.slow
def test_resuming_a_run_that_another_process_writes_is_refused(run):
    record.write_json_atomic(run / runs.RUN_FILE, read.read_json(run / runs.RUN_FILE)
                             | {"status": "running", "pid": 4242, "host": "elsewhere"})
    # this test holds the lock, as the run still training would: an OS lock per open file, so
    # the resume in this same process is refused as another process's would be
    with record.lock(run), pytest.raises(UserError, match="being written by process 4242 on "
                                                          "elsewhere"):
        resumed(run)


# -- 6, 7, 8: moved folders, late kills, empty runs ------------------------------------------------

def interrupted(run: Path) -> dict:
    """The run as a kill after its last checkpoint left it: no metrics.json, not finished."""
    metrics = read.read_json(run / runs.METRICS_FILE)
    (run / runs.METRICS_FILE).unlink()
    info = read.read_json(run / runs.RUN_FILE)
    record.write_json_atomic(run / runs.RUN_FILE, info | {"status": "interrupted"})
    return metrics


@pytest.mark.slow
def test_a_link_out_of_the_run_folder_is_never_written_through(run, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.ckpt").write_bytes(b"not yours")
    shutil.rmtree(run / runs.CHECKPOINT_DIR)
    (run / runs.CHECKPOINT_DIR).symlink_to(elsewhere)
    with pytest.raises(UserError, match="is a link to .*elsewhere, outside the run folder"):
        resume.command_line(["resnet_exp", f"resume={run}"])
    with pytest.raises(UserError, match="outside the run folder"):
        resume.prepare(run)
    assert [p.name for p in elsewhere.iterdir()] == ["precious.ckpt"]


@pytest.mark.slow
def test_a_moved_run_resumes_into_its_own_checkpoints_and_evaluates_to_its_record(run, tmp_path):
    interrupted(run)
    moved = tmp_path / "moved" / "elsewhere"
    moved.parent.mkdir()
    run.rename(moved)
    assert resumed(moved, "trainer.max_epochs=3").status == "finished"
    assert sorted(p.name for p in (moved / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    metrics = read.read_json(moved / runs.METRICS_FILE)
    assert metrics["epochs"] == 3
    again, _ = evaluate.evaluate(moved, [])
    assert again["test/acc"] == metrics["test/acc"]


@pytest.mark.slow
def test_a_kill_during_the_final_test_loses_no_final_metric(run):
    original = interrupted(run)
    assert resumed(run).status == "finished"
    metrics = read.read_json(run / runs.METRICS_FILE)
    final = {k: v for k, v in original.items() if k.startswith("final/")}
    assert len(final) >= 4 and {k: metrics.get(k) for k in final} == final
    assert metrics["test/acc"] == original["test/acc"]


@pytest.mark.slow
def test_zero_epochs_is_refused_before_a_folder_looks_finished(tmp_path):
    result = run_cli([*TINY, "trainer.max_epochs=0"], tmp_path)
    one_line_error(result, "trainer.max_epochs=0", "python -m resnet_exp.eval")
    assert all(read.run_status(p.parent) != "finished" for p in tmp_path.rglob("run.json"))


# -- 9 to 17: one clear line instead of a traceback ------------------------------------------------

def test_the_default_run_folder_is_checked(tmp_path):
    (tmp_path / "outputs").write_text("a file where the runs folder would be")
    result = run_cli(TINY, tmp_path)
    one_line_error(result, "cannot write to the output folder", "hydra.run.dir=")
    assert "HydraConfig was not set" not in result.stderr


def test_a_full_disk_names_the_device_and_the_free_space(tmp_path):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with mock.patch("json.dump", side_effect=full), pytest.raises(UserError) as error:
        record.write_json_atomic(tmp_path / "metrics.json", {"a": 1})
    assert "no space left on the device holding" in str(error.value)
    assert "MiB free" in str(error.value) and "hydra.run.dir=" in str(error.value)


def test_a_full_disk_under_torchs_zip_writer_is_named_as_a_full_disk(tmp_path):
    """torch wraps ENOSPC in a RuntimeError with no errno: the free space tells it apart."""
    import shutil as shell

    from resnet_exp.training import checkpoints

    def zip_writer_fails(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    with mock.patch("torch.save", side_effect=zip_writer_fails), \
            mock.patch.object(shell, "disk_usage", return_value=SimpleNamespace(free=0)), \
            pytest.raises(UserError, match="no space left on the device holding .*0.0 MiB free"):
        checkpoints.save({"w": torch.zeros(1000)}, tmp_path / "best.ckpt")
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    with mock.patch("torch.save", side_effect=zip_writer_fails), \
            pytest.raises(RuntimeError, match="enforce fail"):  # room enough: not a full disk
        checkpoints.save({"w": torch.zeros(1000)}, tmp_path / "best.ckpt")


def test_a_failed_write_during_training_is_reported_once(tmp_path):
    """A full disk under a checkpoint write is one message, not wrapped in a second one (a
    2 MB tmpfs showed it: the failed write is an OSError too)."""
    from resnet_exp.train import fit_and_test

    full = atomic.write_error(tmp_path / "best.ckpt", OSError(errno.ENOSPC, "No space left"))
    trainer = SimpleNamespace(fit=mock.Mock(side_effect=full))
    with pytest.raises(UserError) as error:
        fit_and_test(trainer, None, None)
    assert str(error.value).startswith("no space left on the device holding")
    assert "cannot write" not in str(error.value)


@pytest.mark.slow
@pytest.mark.parametrize(("override", "says"), [
    ("data.batch_size=0", "data.batch_size=0"), ("seed=abc", "seed='abc'"),
    ("model.num_classes=3", "the model gives 3 class scores but the data has 10 classes"),
    ("+trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches=0: give a whole"),
    ("optimizer.lr=[1,2]", "Invalid optimizer config: TypeError"),
    ("data.mean.0=abc", "data.mean=[abc]: give a list, each a number"),
])
def test_bad_values_are_one_line(in_tmp, capsys, override, says):
    assert says in refusal(capsys, [*TINY, override])


def test_an_override_hydra_cannot_parse_is_one_line(tmp_path):
    """Read by the command line before Hydra starts (runs/resume.py), whose parser would end in
    a traceback."""
    one_line_error(run_cli([*TINY, "name=ü"], tmp_path), "name=ü: Hydra cannot read this override")


@pytest.mark.parametrize("override", ["augmentation.flip=yes", "data.mean.0=abc", "seed=abc"])
def test_a_value_of_the_wrong_type_leaves_no_run_folder(in_tmp, capsys, override):
    refusal(capsys, [*TINY, override])
    assert not (in_tmp / "outputs").exists()


@pytest.mark.parametrize("content", [b"model: [unclosed\n  x: {", b"\xff\xfe\x00binary\x80"])
def test_an_unreadable_file_in_a_config_dir_is_one_line(tmp_path, content):
    (tmp_path / "mine" / "experiment").mkdir(parents=True)
    (tmp_path / "mine" / "experiment" / "bad.yaml").write_bytes(content)
    result = run_cli(["--config-dir", str(tmp_path / "mine"), "experiment=bad", *TINY], tmp_path)
    one_line_error(result, "bad.yaml is not a readable YAML file")


@pytest.mark.slow
def test_a_truncated_run_json_still_resumes_and_evaluates(run, tmp_path):
    (run / runs.RUN_FILE).write_text('{"status": "fini')
    metrics, _ = evaluate.evaluate(run, [])
    assert metrics["test/acc"] == read.read_json(run / runs.METRICS_FILE)["test/acc"]
    assert resumed(run).status == read.run_status(run) == "finished"


@pytest.mark.slow
def test_garbage_in_saved_overrides_is_one_line(run, tmp_path):
    (run / runs.OVERRIDES_FILE).write_text("- model=[unclosed\n- : :\n")
    one_line_error(run_cli([f"resume={run}"], tmp_path), "overrides.yaml cannot be read")
    assert evaluate.main([str(run)]) == 2


@pytest.mark.slow
def test_a_sweep_with_a_failing_job_goes_on_and_ends_with_its_table(tmp_path):
    result = run_cli(["-m", *TINY, "data.batch_size=0,32", "hydra.sweep.dir=sweep"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 jobs in" in result.stdout and "failed" in result.stdout
    assert "finished" in result.stdout and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "data.batch_size=0" in errors[0], result.stderr[-3000:]


@pytest.mark.slow
def test_a_search_whose_every_trial_fails_ends_with_its_table(tmp_path):
    # label smoothing above 1 makes the loss raise on the first step of every trial; no -m:
    # a search is a sweep by itself
    result = run_cli(["hparams_search=cifar_resnet", "hydra.sweeper.n_trials=2", *TINY,
                      "module.label_smoothing=interval(1.5, 2.0)", "hydra.sweep.dir=search"],
                     tmp_path)
    assert "Record does not exist" not in result.stderr, result.stderr[-3000:]
    assert "no trial of the search completed" in result.stderr
    assert "2 jobs in" in result.stdout and result.stdout.count("failed") >= 2
    assert [read.run_status(job) for job in read.find_runs(tmp_path / "search")] == [
        "failed", "failed"]


def test_a_sweep_into_a_folder_that_holds_one_is_refused(tmp_path):
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / runs.SWEEP_FILE).write_text("# an earlier sweep\n")
    result = run_cli(["-m", *TINY, "seed=1,2", "hydra.sweep.dir=sweep"], tmp_path)
    one_line_error(result, "hydra.sweep.dir=", "holds a sweep already")
    assert (tmp_path / "sweep" / runs.SWEEP_FILE).read_text() == "# an earlier sweep\n"
    assert [p.name for p in (tmp_path / "sweep").iterdir()] == [runs.SWEEP_FILE]


def test_a_download_that_never_answers_says_so_and_gives_up(tmp_path, capsys):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/cifar-10-python.tar.gz"
    data = CIFAR10(root=str(tmp_path), download=True, num_classes=10, in_channels=3,
                   image_size=32, mean=[0.5] * 3, std=[0.25] * 3)
    try:
        with mock.patch.object(CIFAR10.source, "url", url), \
                mock.patch.object(data_memory, "DOWNLOAD_TIMEOUT_S", 0.5), \
                pytest.raises(UserError, match="no answer for"):
            data.prepare_data()
    finally:
        server.close()
    assert f"downloading CIFAR-10 from {url}" in capsys.readouterr().err


@pytest.mark.slow
def test_a_report_into_a_folder_that_cannot_be_written_is_one_line(smoke_run, tmp_path, capsys):
    from resnet_exp import report

    (tmp_path / "a_file").write_text("")  # a folder below a file: refused even to root
    assert report.main([str(smoke_run), "--out", str(tmp_path / "a_file" / "r"),
                        "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out ") and "cannot write there" in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"]


@pytest.mark.slow
@pytest.mark.parametrize(("run_json", "metrics_json"), [("{trunc", "[1, 2"), ("[1, 2]", '"x"')])
def test_the_report_of_a_damaged_run_lists_it_instead_of_failing(run, tmp_path, run_json,
                                                                 metrics_json):
    """Truncated files, and valid JSON of the wrong shape."""
    (run / runs.RUN_FILE).write_text(run_json)
    (run / runs.METRICS_FILE).write_text(metrics_json)
    from resnet_exp import report

    assert report.main([str(run), "--out", str(tmp_path / "report"), "--no-figures"]) == 0
    assert "unreadable" in (tmp_path / "report" / "report.md").read_text()
