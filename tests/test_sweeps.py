"""Scaling out on existing engines: Hydra's joblib and submitit launchers, the Optuna sweeper,
Lightning's DDP. Each test runs the real command line in a process of its own on the embedded
digits."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path

import pytest
import pytorch_lightning as pl
from conftest import TESTS_ON_PATH, compose_config, job_dir, run_cli
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from torch.utils.data import DistributedSampler

from resnet_exp import runs
from resnet_exp.runs import read
from resnet_exp.runs.compare import differing_keys

# Every job as short as a run can be: 3 training batches, no rich widgets or figures to draw
# (the figures take ~9 of a smoke run's ~12 CPU seconds here).
SMOKE = ["trainer=smoke", "callbacks=lean"]


def sweep_dir(cwd: Path) -> Path:
    sweeps = sorted((cwd / "outputs" / "multirun").iterdir())
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


def job_info(sweep: Path) -> list[dict]:
    return [read.read_json(job / runs.RUN_FILE) for job in read.find_runs(sweep)]


def test_configs_compose_with_resources_from_the_trainer(compose_cfg):
    cfg = compose_cfg("hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2",
                      "trainer.devices=8")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")  # the plugin's config, extended
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 8, 8)
    assert launcher.max_num_timeout > 0  # time-outs requeue
    launcher = compose_cfg("hydra/launcher=slurm").hydra.launcher
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (1, 1, 1)
    sweeper = compose_cfg("hparams_search=cifar_resnet").hydra.sweeper
    from hydra_plugins.resnet_exp_sweepers.optuna_sweeper import optuna_direction

    assert sweeper._target_.endswith("OptunaSweeper")
    assert optuna_direction(sweeper.direction) == "maximize"  # monitor_mode of val/acc
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == 0
    assert sweeper.storage.endswith("/optuna.db")
    assert sweeper.pruner._target_ == "optuna.pruners.MedianPruner"
    pruner = compose_cfg("hparams_search=cifar_resnet", "hydra/sweeper/pruner=hyperband")
    assert pruner.hydra.sweeper.pruner._target_ == "optuna.pruners.HyperbandPruner"
    assert set(sweeper.params) == {"optimizer.lr", "optimizer.weight_decay",
                                   "module.label_smoothing"}


def test_the_search_space_is_read_from_hydras_sweep_syntax():
    from optuna.distributions import CategoricalDistribution as C
    from optuna.distributions import FloatDistribution as F
    from optuna.distributions import IntDistribution as I

    from hydra_plugins.resnet_exp_sweepers.optuna_sweeper import search_space

    space, fixed = search_space(
        {"optimizer.lr": "tag(log, interval(0.01, 0.5))", "model": "choice(resnet20, resnet56)",
         "model.depth": "range(8, 68, 30)", "seed": 1},
        ["module.label_smoothing=interval(0, 0.2)", "optimizer.lr=range(0.5, 2.0, 0.5)",
         "data.batch_size=64,128", "trainer.max_epochs=3", "x=tag(int, interval(1, 4))"])
    assert space == {
        "optimizer.lr": F(0.5, 1.5, step=0.5),  # the command line's range wins
        "model": C(["resnet20", "resnet56"]), "model.depth": I(8, 38, step=30),
        "seed": C([1]), "module.label_smoothing": F(0.0, 0.2),
        "data.batch_size": C([64, 128]), "x": I(1, 4)}
    assert fixed == ["trainer.max_epochs=3"]
    assert search_space({"a": "tag(log, interval(1e-5, 1e-3))"}, [])[0]["a"] == F(1e-5, 1e-3,
                                                                                   log=True)


def test_a_drawn_value_reaches_its_job_as_the_value_drawn():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.resnet_exp_sweepers.optuna_sweeper import job_overrides, search_space

    space, fixed = search_space({"model.weights": "null,IMAGENET1K_V1",
                                 "model.residual": "true,false", "ema.decays": "[0.9],[0.99]"},
                                ["seed=1"])
    drawn = {key: distribution.choices[0] for key, distribution in space.items()}
    assert drawn == {"model.weights": None, "model.residual": True, "ema.decays": [0.9]}
    overrides = job_overrides(fixed, drawn, trial=3)
    assert overrides[0] == "seed=1"
    assert overrides[-2:] == ["hydra.sweeper.trial=3", "hydra.sweeper.folder=3"]
    assert job_overrides(fixed, drawn, trial=5, folder=2)[-1] == "hydra.sweeper.folder=2"
    parsed = OverridesParser.create().parse_overrides(overrides[1:-2])
    assert {o.key_or_group: o.value() for o in parsed} == drawn


def test_a_null_pruner_prunes_nothing_in_the_sweeper_and_in_each_job():
    import optuna

    from resnet_exp.callbacks.pruning import build_pruner

    # Optuna's default for a study given no pruner is its median pruner
    assert isinstance(build_pruner(None), optuna.pruners.NopPruner)
    median = OmegaConf.create({"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 2})
    assert build_pruner(median)._n_startup_trials == 2


def test_effective_batch_and_the_local_sweep_guard():
    from resnet_exp.core.errors import UserError
    from resnet_exp.training import distributed

    def trainer(**kwargs):
        return pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, **kwargs)

    ddp = trainer(devices=2, strategy="ddp", accumulate_grad_batches=4)
    assert distributed.batch_scale(ddp, 64) == {"world_size": 2, "effective_batch_size": 512}
    assert distributed.batch_scale(trainer(devices=1), 64)["effective_batch_size"] == 64
    with pytest.raises(UserError, match="inside a local sweep"):
        distributed.check_launch(ddp, multirun=True)
    distributed.check_launch(ddp, multirun=False)
    # the spawned processes keep every result they compute: refused alone and in a sweep
    for multirun in (False, True):
        with pytest.raises(UserError, match="ddp_spawn: the processes it spawns"):
            distributed.check_launch(trainer(devices=2, strategy="ddp_spawn"), multirun)


def test_swept_keys_are_the_overrides_that_differ():
    jobs = [{"model": "resnet20", "seed": "1"}, {"model": "resnet20", "seed": "2", "x": "0"}]
    assert differing_keys(jobs) == ["seed", "x"]
    assert differing_keys(jobs[:1]) == ["model", "seed"]


class Rendezvous(pl.Callback):
    """Test-only: as training starts, each job connects to the test's `meeting` socket, sends
    its process id and blocks until the test answers, which it does once `jobs` jobs have
    connected: jobs that run one after another never meet, and the first fails after
    `timeout_s` (a bound for a hung sweep, not a speed)."""

    def __init__(self, address: str, timeout_s: float = 600) -> None:
        self.address, self.timeout_s = address, timeout_s

    def on_train_start(self, trainer, pl_module) -> None:
        with socket.socket(socket.AF_UNIX) as meeting:
            meeting.settimeout(self.timeout_s)
            meeting.connect(self.address)
            meeting.sendall(str(os.getpid()).encode())
            if meeting.recv(2) != b"go":
                raise TimeoutError("the other jobs never started beside this one")


def meeting(address: Path, jobs: int) -> list[str]:
    """The test's side of `Rendezvous`: a thread that waits for `jobs` connections, then lets
    them all go; the list fills with their process ids."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(address))
    server.listen(jobs)
    pids: list[str] = []

    def gather() -> None:
        with server:
            connections = [server.accept()[0] for _ in range(jobs)]
            pids.extend(connection.recv(32).decode() for connection in connections)
            for connection in connections:
                with connection:
                    connection.sendall(b"go")

    threading.Thread(target=gather, daemon=True).start()
    return pids




@pytest.mark.slow
def test_joblib_runs_two_jobs_at_once_with_one_thread_share_each(tmp_path):
    # a short folder of its own: a UNIX socket's path is at most 107 bytes
    address = Path(tempfile.mkdtemp(prefix="meet")) / "socket"
    pids = meeting(address, jobs=2)
    result = run_cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *SMOKE,
                      "+callbacks.rendezvous._target_=test_sweeps.Rendezvous",
                      f"+callbacks.rendezvous.address={address}", "seed=1,2"], tmp_path,
                     timeout=300, env=TESTS_ON_PATH)
    shutil.rmtree(address.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(set(pids)) == 2  # two worker processes, training at the same time
    sweep = sweep_dir(tmp_path)
    assert [p.name.split("_")[0] for p in read.find_runs(sweep)] == ["0", "1"]
    first, second = job_info(sweep)
    assert first["status"] == second["status"] == "finished"
    assert (first["seed"], second["seed"]) == (1, 2)
    # joblib's loky workers cap every thread pool at cpu_count // n_jobs (OMP_NUM_THREADS)
    import joblib

    threads = max(1, joblib.cpu_count() // 2)
    assert first["device"].endswith(f", {threads} threads"), first["device"]
    # the end-of-sweep table: both jobs, the swept key, their status
    out = result.stdout
    assert "2 jobs in" in out and "seed" in out and out.count("finished") >= 2, out[-2000:]


@pytest.mark.slow
def test_submitit_local_sweep_with_the_slurm_commands_resume_flag(tmp_path):
    # The SLURM launcher's code path (submitit pickles the job, a fresh process runs it),
    # through submitit's local executor; resume=true as the README's SLURM command gives it:
    # fresh folders simply start. Unlike joblib, submitit's local executor leaves thread counts
    # alone (on SLURM, cpus_per_task bounds them): run_cli's one thread each keeps 2 jobs on
    # 2 cores.
    result = run_cli(["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
                      "resume=true", *SMOKE, "seed=1,2"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = sweep_dir(tmp_path)
    info = job_info(sweep)
    assert [j["status"] for j in info] == ["finished", "finished"]
    assert "resumed" not in info[0]
    for job in read.find_runs(sweep):
        metrics = read.read_json(job / runs.METRICS_FILE)
        assert 0.0 <= metrics["val/acc_best"] <= 1.0
    assert list((sweep / ".submitit").glob("*/*_log.out")), "submitit wrote no job logs"
    assert "2 jobs in" in result.stdout


def dashboard_reads(storage: str) -> dict:
    """The one study in `storage` as optuna-dashboard's app answers for it, served on a loopback
    port of its own by wsgiref (what `optuna-dashboard` serves with too): the socket listens
    before the first request, so nothing waits for the server to come up."""
    import json
    import threading
    import urllib.request
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    import optuna_dashboard

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = make_server("127.0.0.1", 0, optuna_dashboard.wsgi(storage), handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        studies = json.load(urllib.request.urlopen(f"{url}/api/studies", timeout=60))
        (study,) = studies["study_summaries"]
        return json.load(urllib.request.urlopen(f"{url}/api/studies/{study['study_id']}",
                                                timeout=60))
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_optuna_search_records_failed_pruned_and_complete_trials_and_goes_on(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from resnet_exp.runs.context import RunContext
    from resnet_exp.train import train

    # label smoothing above 1 makes the loss raise on the first step: with the search's TPE
    # seed (0), the random start-up trials draw 0.90, 0.97, 1.45 and 0.79 from [0, 1.5].
    # Trial 3 is pruned after its first epoch by a test pruner (tests/prune_trials.py), so
    # that which trial is pruned does not depend on the values 3 batches happen to reach.
    search = ["hparams_search=cifar_resnet", *SMOKE, "trainer.max_epochs=2",
              "module.label_smoothing=interval(0.0, 1.5)",
              "hydra/sweeper/pruner=none", "hydra.sweeper.pruner._target_=prune_trials.PruneTrials"]
    result = run_cli([*search, "hydra.sweeper.n_trials=4", "+hydra.sweeper.pruner.numbers=[3]"],
                     tmp_path, timeout=300, env=TESTS_ON_PATH)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = sweep_dir(tmp_path)
    storage = f"sqlite:///{sweep / 'optuna.db'}"
    trials = optuna.load_study(study_name="cifar_resnet", storage=storage).trials
    jobs = read.find_runs(sweep)
    assert len(trials) == len(jobs) == 4
    states = {}
    for trial, job in zip(trials, jobs, strict=True):
        assert 0.01 <= trial.params["optimizer.lr"] <= 0.5
        info = read.read_json(job / runs.RUN_FILE)
        states[trial.number] = trial.state
        if trial.params["module.label_smoothing"] > 1.0:
            assert trial.state == TrialState.FAIL
            assert info["status"] == "failed" and "label_smoothing" in info["error"]
            continue
        metrics = read.read_json(job / runs.METRICS_FILE)
        # every epoch's val/acc went to the trial, through the storage, from the job's process
        assert len(trial.intermediate_values) == metrics["epochs"]
        if trial.number == 3:
            assert trial.state == TrialState.PRUNED and info["status"] == "pruned"
            assert metrics["epochs"] == 1 and "test/acc" in metrics  # stopped, then tested
            pruned = job
        else:  # the objective is the run's own best validation accuracy
            assert trial.state == TrialState.COMPLETE and info["status"] == "finished"
            assert metrics["epochs"] == 2
            assert trial.value == pytest.approx(metrics["val/acc_best"])
    assert set(states.values()) == {TrialState.FAIL, TrialState.PRUNED, TrialState.COMPLETE}
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_value == max(t.value for t in trials if t.state == TrialState.COMPLETE)
    assert best.trials.pruned == 1 and best.trials.fail == sum(
        s == TrialState.FAIL for s in states.values())
    # the sweep table shows pruned trials apart from failed ones
    assert "4 jobs in" in result.stdout and "failed" in result.stdout and "pruned" in result.stdout
    assert "setup plugin" not in result.stderr  # Alembic's lines as Optuna opens its database

    # optuna-dashboard, served on loopback over the finished study, reads the pruned trial back
    dashboard = dashboard_reads(storage)
    shown = {t["number"]: t for t in dashboard["trials"]}
    assert shown[3]["state"] == "Pruned" and len(shown[3]["intermediate_values"]) == 1
    assert {t["state"] for t in shown.values()} == {"Complete", "Pruned", "Fail"}

    # Resuming the pruned run does not restart it: its trial is over.
    before = {p: p.read_bytes() for p in (pruned / runs.RUN_FILE, pruned / runs.METRICS_FILE)}
    cfg = compose_config(["trainer=smoke", "resume=true"], pruned)
    try:
        metrics = train(cfg, RunContext.of(cfg.hydra))
        assert metrics == read.read_json(pruned / runs.METRICS_FILE)
    finally:
        GlobalHydra.instance().clear()
    assert {p: p.read_bytes() for p in before} == before

    # Continued into a new sweep folder, two trials at once in joblib's worker processes: they
    # join the same study at new points, each job reporting to its own trial from its worker.
    result = run_cli([*search, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                      "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                      "+hydra.sweeper.pruner.numbers=[]", f"hydra.sweeper.storage={storage}",
                      "hydra.sweep.dir=outputs/continued"], tmp_path, timeout=300,
                     env=TESTS_ON_PATH)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = optuna.load_study(study_name="cifar_resnet", storage=storage).trials
    assert len(trials) == 6
    # new points: the continued sampler is not reseeded into the first sweep's draws
    assert trials[4].params != trials[5].params
    assert all(t.params not in [u.params for u in trials[:4]] for t in trials[4:])
    for trial in trials[4:]:  # each job's folder carries its trial's number: 4_, 5_
        failing = trial.params["module.label_smoothing"] > 1.0
        assert trial.state == (TrialState.FAIL if failing else TrialState.COMPLETE)
        assert len(trial.intermediate_values) == (0 if failing else 2)
        assert read.run_status(job_dir(tmp_path / "outputs" / "continued", trial.number)) == (
            "failed" if failing else "finished")


class RankProbe(pl.Callback):
    """Test-only: what each DDP rank sampled, fed to the model and logged, in rank<N>.json."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.seen: list[list[int]] = []
        self.val: dict = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(batch[1].tolist())

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.val = {k: float(v) for k, v in trainer.callback_metrics.items()
                        if k.startswith("val/")}

    def on_fit_end(self, trainer, pl_module) -> None:
        sampler = trainer.train_dataloader.sampler
        dataset = trainer.datamodule.train_set
        indices = list(sampler)  # this rank's share of epoch 0 (DistributedSampler.set_epoch)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps({
            # DistributedSamplerWrapper when the loader has a sampler of its own (EpochShuffle)
            "distributed": isinstance(sampler, DistributedSampler),
            "indices": indices,
            "sampler_labels": [int(dataset.y[dataset.index[i]]) for i in indices],
            "dataset_size": len(dataset),
            "seen": self.seen,
            "val": self.val,
        }))


@pytest.mark.slow
def test_ddp_two_cpu_processes_share_one_run_folder(tmp_path):
    probe = tmp_path / "probe"
    result = run_cli([
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
        "trainer.max_epochs=1", "trainer.num_sanity_val_steps=0", "+trainer.limit_train_batches=3",
        "+trainer.limit_val_batches=2", "+trainer.limit_test_batches=2",
        "callbacks=lean", "+callbacks.rank_probe._target_=test_sweeps.RankProbe",
        f"+callbacks.rank_probe.out={probe}",
        "logger=[tensorboard,mlflow]",  # each with its end-of-run extras (HPARAMS, artifacts)
    ], tmp_path, timeout=300, env=TESTS_ON_PATH)
    assert result.returncode == 0, result.stderr[-3000:]

    # One run folder, written by rank 0 alone (rank 1 is Lightning's re-run of the command with
    # hydra.job.name=train_ddp_process_1 appended), printed once.
    (run,) = (tmp_path / "outputs" / "runs").iterdir()
    # Rank 1 prints into the same stdout and stderr and logs to its own file; the exit status is
    # rank 0's alone, so a rank that died after the last collective call shows only here.
    logs = {path.name: path.read_text() for path in run.glob("*.log")}
    assert set(logs) == {"__main__.log", "train_ddp_process_1.log"}, set(logs)
    for name, text in {"stdout": result.stdout, "stderr": result.stderr, **logs}.items():
        assert "Traceback" not in text and "Error executing job" not in text, (name, text[-3000:])
    info = read.read_json(run / runs.RUN_FILE)
    assert info["status"] == "finished"
    assert not any("train_ddp_process" in arg for arg in info["command"]), info["command"]
    assert (info["world_size"], info["effective_batch_size"]) == (2, 2 * 64)
    metrics = read.read_json(run / runs.METRICS_FILE)
    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert result.stdout.count("resnet20_digits: finished") == 1
    # TensorBoard's files (events.out.tfevents.<time>.<host>.<pid>.<n>) come from one process
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and len({path.name.rsplit(".", 2)[1] for path in events}) == 1, events

    ranks = [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank in ranks:
        assert rank["distributed"]
        # what the rank trained on is its sampler's share, batch by batch (64 images each)
        flat = [label for batch in rank["seen"] for label in batch]
        assert len(rank["seen"]) == 3 and flat == rank["sampler_labels"][:len(flat)]
    # Both ranks saw different data, and together all of it: DistributedSampler pads the 1,257
    # training images to 1,258 with one repeat, so the shares overlap in at most one image.
    a, b = (set(rank["indices"]) for rank in ranks)
    assert len(a & b) <= 1 and a | b == set(range(ranks[0]["dataset_size"]))
    assert ranks[0]["seen"] != ranks[1]["seen"]
    # Metrics are synchronised: both ranks hold the same validation loss and accuracy, over
    # both ranks' batches.
    assert ranks[0]["val"] and ranks[0]["val"] == ranks[1]["val"]
