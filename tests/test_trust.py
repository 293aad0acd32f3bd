"""A foreign run folder runs no code and touches no file outside its roots without --trust
(resnet_exp/runs/trust.py): the allowed set is exact and canonical, the check reads the config as
it will be instantiated, and no placement of a code runner in a copied run gets one through eval,
resume, reproduce or analyze.
"""

from __future__ import annotations

import importlib
import inspect
import types
from pathlib import Path

import pytest
from hydra._internal.utils import _locate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from resnet_exp import analyze, reproduce, runs
from resnet_exp import eval as evaluate
from resnet_exp.core import config
from resnet_exp.core.errors import UserError
from resnet_exp.runs import replay, resume, trust


def canonical_name(obj) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


# -- the allowed set ------------------------------------------------------------------------------

def test_each_project_target_is_the_canonical_name_of_what_it_locates():
    assert len(trust.project_targets()) > 40
    for name in trust.project_targets():
        assert canonical_name(_locate(name)) == name


def test_each_swappable_spelling_locates_the_object_its_canonical_name_does():
    for spelling, canonical in trust.SWAPPABLE.items():
        obj = _locate(spelling)
        assert canonical_name(obj) == canonical, spelling
        assert _locate(canonical) is obj


def test_every_target_of_the_config_tree_is_allowed_and_canonical_for_this_package():
    targets = {value for path in config.CONF_DIR.rglob("*.yaml")
               for _, key, value, _ in trust._items(OmegaConf.to_container(OmegaConf.load(path)))
               if key == "_target_" and value != "???"}
    assert len(targets) > 40
    for target in targets:
        assert trust.allowed(target), target
        if target.startswith("resnet_exp."):
            assert canonical_name(_locate(target)) == target


def _attribute_paths(name: str, obj, depth: int, seen: set):
    """Every dotted path reachable from `obj` through attributes, `depth` hops deep, through
    modules and classes (what Hydra's locator walks)."""
    if depth == 0:
        return
    try:
        attributes = list(vars(obj).items())
    except TypeError:
        return
    for attr, value in attributes:
        if attr.startswith("__"):
            continue
        path = f"{name}.{attr}"
        yield path, value
        if isinstance(value, types.ModuleType | type) and (id(value), depth) not in seen:
            seen.add((id(value), depth))
            yield from _attribute_paths(path, value, depth - 1, seen)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch's deprecated aliases, walked past
def test_no_attribute_path_through_an_allowed_module_reaches_an_unlisted_callable():
    """Walks every attribute path 3 hops deep from each module that holds an allowed target:
    the paths that pass are exactly the listed names, each locating the callable it names."""
    canonical = set(trust.project_targets()) | set(trust.SWAPPABLE.values())
    modules = {name.rpartition(".")[0] for name in trust.allowed_targets()}
    modules = {m for m in modules if _importable(m)}
    walked, passed = 0, set()
    for module_name in sorted(modules):
        for path, value in _attribute_paths(module_name, importlib.import_module(module_name), 3,
                                            set()):
            walked += 1
            if trust.allowed(path):
                passed.add(path)
                assert canonical_name(value) in canonical, path
    assert walked > 10_000  # torch, Lightning and os are reachable from these modules
    assert not trust.allowed("resnet_exp.models.weights.torch.utils.collect_env.run")
    assert passed and passed <= trust.allowed_targets()


def _importable(module_name: str) -> bool:
    try:
        importlib.import_module(module_name)
    except ImportError:
        return False
    return True


# -- the config as it will be instantiated --------------------------------------------------------

def test_a_target_built_by_a_resolver_is_checked_after_it_resolves(tmp_path):
    evil = '${oc.create:"{_target_: torch.utils.collect_env.run, command: touch X}"}'
    cfg = config.compose(["+callbacks.evil=" + config.quote(evil)], tmp_path, with_hydra=True)
    with pytest.raises(UserError, match="callbacks.evil._target_=torch.utils.collect_env.run"):
        trust.check(cfg, source="a test")


def test_a_value_that_cannot_be_resolved_is_refused(tmp_path):
    cfg = config.compose(["+callbacks.evil._target_='${oc.env:NO_SUCH_VARIABLE_HERE}'"], tmp_path,
                         with_hydra=True)
    with pytest.raises(UserError, match="cannot be resolved.*--trust"):
        trust.check(cfg, source="a test")


def test_targets_in_lists_and_in_the_hydra_node_are_checked():
    cfg = OmegaConf.create({"a": [{"b": [{"_target_": "os.system"}]}],
                            "hydra": {"callbacks": {"x": {"_target_": "shutil.copyfile"}}}})
    assert trust.untrusted(trust.resolved(cfg)) == [("a.0.b.0._target_", "os.system"),
                                                    ("hydra.callbacks.x._target_",
                                                     "shutil.copyfile")]


# -- files and folders ----------------------------------------------------------------------------

def planted(run: Path, *extra: str) -> Path:
    saved = [*OmegaConf.load(run / runs.OVERRIDES_FILE), *extra]
    OmegaConf.save(OmegaConf.create(saved), run / runs.OVERRIDES_FILE)
    return run


@pytest.mark.slow  # a copy of the shared finished run
@pytest.mark.parametrize("override", [
    "callbacks.model_checkpoint.dirpath={elsewhere}",
    "callbacks.model_checkpoint.filename=../../../{elsewhere_name}/best",
    "logger.tensorboard.save_dir={elsewhere}",
    "+trainer.default_root_dir={elsewhere}",
])
def test_a_path_outside_the_run_and_its_roots_is_refused_unless_given_or_trusted(
        smoke_run_copy, tmp_path, override):
    elsewhere = tmp_path / "elsewhere"
    override = override.format(elsewhere=elsewhere, elsewhere_name=elsewhere.name)
    run = planted(smoke_run_copy, override)
    with pytest.raises(UserError, match="outside the run folder.*--trust"):
        replay.replay(run, [], allow=False)
    replay.replay(run, [], allow=True)
    key = config.override_key(override)
    replay.replay(run, [f"{key}={run / 'inside'}"], allow=False)  # the user's own choice


@pytest.mark.slow
def test_the_run_folder_and_the_default_roots_pass(smoke_run_copy):
    run = planted(smoke_run_copy, f"callbacks.model_checkpoint.dirpath={smoke_run_copy}/ckpts")
    overrides, _ = replay.replay(run, [], allow=False)
    assert f"callbacks.model_checkpoint.dirpath={smoke_run_copy}/ckpts" in overrides


# -- no placement of a code runner gets through ---------------------------------------------------

def _through_allowed_modules() -> list[str]:
    """Paths to code runners through the attributes of modules that hold allowed targets."""
    found = []
    for module_name in sorted({n.rpartition(".")[0] for n in trust.project_targets()}):
        module = importlib.import_module(module_name)
        for attr, runner in (("torch", "utils.collect_env.run"), ("os", "system"),
                             ("subprocess", "getoutput")):
            if inspect.ismodule(getattr(module, attr, None)):
                found.append(f"{module_name}.{attr}.{runner}")
    return found


RUNNERS = ["torch.utils.collect_env.run", "os.system", "subprocess.getoutput", "builtins.open",
           *_through_allowed_modules()[:12]]
NODE = "{{_target_: {target}, _args_: [{payload}]}}"
PLACEMENTS = {
    "keys": ["+callbacks.evil._target_={target}", "+callbacks.evil._args_=[{payload}]"],
    "oc.create": ["+callbacks.evil='${{oc.create:\"" + NODE + "\"}}'"],
    "oc.decode": ["+callbacks.evil='${{oc.decode:\"" + NODE + "\"}}'"],
    "interpolation": ["+evil_target={target}", "+callbacks.evil._target_='${{evil_target}}'",
                      "+callbacks.evil._args_=[{payload}]"],
    "a node elsewhere": ["+model.evil=" + NODE],
    "a list": ["+trainer.plugins=[" + NODE + "]"],
}
COMMANDS = {
    "eval": lambda run: evaluate.evaluate(run, []),
    "resume": lambda run: resume.command_line(["resnet_exp", f"resume={run}"]),
    "reproduce": lambda run: reproduce.reproduce(run, []),
    "analyze": lambda run: analyze.trained(run, images=8),
}


@pytest.mark.slow
@settings(max_examples=30, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(RUNNERS), placement=st.sampled_from(sorted(PLACEMENTS)),
       command=st.sampled_from(sorted(COMMANDS)))
def test_no_planted_code_runner_runs_under_any_command(smoke_run, tmp_path_factory, target,
                                                      placement, command):
    import shutil

    folder = tmp_path_factory.mktemp("planted")
    run = folder / "run"
    shutil.copytree(smoke_run, run)
    marker = folder / "code-ran"
    payload = f"{marker},w" if target == "builtins.open" else f"touch {marker}"
    planted(run, *(o.format(target=target, payload=payload) for o in PLACEMENTS[placement]))
    with pytest.raises(UserError, match="refusing the config|cannot be resolved"):
        COMMANDS[command](run)
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("placement", sorted(PLACEMENTS))
def test_each_placement_is_live_code_that_runs_under_trust(smoke_run_copy, tmp_path, placement):
    """What the property test plants would run: with --trust, eval runs it (and then may fail)."""
    marker = tmp_path / "code-ran"
    planted(smoke_run_copy, *(o.format(target="torch.utils.collect_env.run",
                                       payload=f"touch {marker}")
                              for o in PLACEMENTS[placement]))
    try:
        evaluate.evaluate(smoke_run_copy, [], trust=True)
    except Exception:  # its return value is no callback: what matters ran before it failed
        pass
    assert marker.exists()
