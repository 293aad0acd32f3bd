"""The run context (resnet_exp/runs/context.py): what Hydra knows about the running job is read
once, at the entry point, and passed down; no other module of the package reads Hydra's global."""

from __future__ import annotations

from pathlib import Path

from resnet_exp.core import config
from resnet_exp.runs.context import RunContext

PACKAGE = Path(config.__file__).parents[1]


def test_only_the_context_and_the_hydra_callbacks_touch_hydras_global():
    readers = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                     if "HydraConfig" in p.read_text())
    assert readers == ["runs/context.py", "runs/hydra_hooks.py"]


def test_a_composed_config_describes_its_run(tmp_path):
    cfg = config.compose(["model=vgg08", "seed=3"], tmp_path)
    context = RunContext.of(cfg.hydra)
    assert context.run_dir == tmp_path and not context.multirun
    assert context.overrides == ("model=vgg08", "seed=3")
    assert context.choices["model"] == "vgg08" and context.choices["data"] == "digits"


def test_a_search_jobs_sweeper_settings_reach_its_pruning_callback(tmp_path):
    from resnet_exp.callbacks.pruning import OptunaPruning
    from resnet_exp.runs.extension import RunStart

    cfg = config.compose(["hparams_search=cifar_resnet"], tmp_path)
    context = RunContext.of(cfg.hydra)
    assert context.multirun and context.sweeper["study_name"] == "cifar_resnet"
    assert context.sweeper["storage"].endswith("/optuna.db")  # resolved, not ${hydra.sweep.dir}
    assert context.sweeper["trial"] is None  # the sweeper's own process: no trial, no pruning
    for given in (context, RunContext()):
        pruning = OptunaPruning("val/acc")
        pruning.start(RunStart(given, record=None))
        assert pruning.trial is None and pruning.status() is None
