"""Running a saved run's config again: continued in its own folder (`resume`), into a new folder
(`reproduce`), or tested (`eval`).

A run is replayed the way Hydra recorded it: its `.hydra/overrides.yaml` over today's config tree,
then the user's extra overrides, which replace saved ones of the same key. Before anything is
built, the composed config must pass the allow-list (trust.py), and keys where it differs from
the saved `.hydra/config.yaml` (the config tree changed since the run) are named in a warning.

    python -m resnet_exp resume=RUN_DIR [key=value ...] [--trust]
        the run's overrides, with RUN_DIR as Hydra's run folder; its .hydra/ is kept as written.
    python -m resnet_exp -m hydra.sweep.dir=SWEEP_DIR resume=true [sweep overrides]
        every job continues in the folder Hydra picks for it: finished jobs are skipped (their
        metrics are the objective), interrupted ones resume from last.ckpt, others start.

Imports no torch: `__main__` calls `command_line` before Hydra starts.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from resnet_exp import runs, trust
from resnet_exp.errors import UserError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
# Keys of the replay machinery itself, never replayed from a run's saved overrides.
OWN_KEYS = ("resume",)


def _key(override: str) -> str:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(override).key_or_group


def replay_overrides(run_dir: Path, extra: list[str]) -> list[str]:
    """The run's saved overrides, minus those that `extra` replaces, then `extra`."""
    saved = [o for o in runs.read_overrides(run_dir) if _key(o) not in OWN_KEYS]
    for override in saved:
        if _key(override).startswith("hydra"):
            raise UserError(
                f"{run_dir / runs.OVERRIDES_FILE} holds the Hydra override {override!r}, which a "
                "run never records: the file was edited; refusing to replay it"
            )
    replaced = {_key(o) for o in extra}
    return [o for o in saved if _key(o) not in replaced] + list(extra)


def compose(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """The config `python -m resnet_exp OVERRIDES` would run. With `output_dir`, Hydra's node is
    kept and set as the current HydraConfig, so `${hydra:...}` resolves as in a run there."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR),
                                   job_name="resnet_exp"):
            cfg = hydra_compose("config", overrides=overrides,
                                return_hydra_config=output_dir is not None)
    except HydraException as e:
        raise UserError(f"the overrides {' '.join(overrides)} do not compose: {e}") from None
    if output_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
    return cfg


def _flat(node, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def drift(saved: DictConfig, composed: DictConfig, extra: list[str]) -> list[str]:
    """Keys whose value differs between the run's saved config and today's composition of its
    overrides, leaving out those the user overrode (`extra`) and the replay's own keys."""
    ignore = {_key(o).lstrip("+~") for o in extra} | set(OWN_KEYS) | {"hydra"}
    old = _flat(OmegaConf.to_container(saved, resolve=False))
    new = _flat(OmegaConf.to_container(composed, resolve=False))
    changed = []
    for key in sorted(old.keys() | new.keys()):
        top = key.split(".")[0]
        if top in ignore or any(key == i or key.startswith(i + ".") or key.startswith(i + "/")
                                for i in ignore):
            continue
        if old.get(key, "<absent>") != new.get(key, "<absent>"):
            changed.append(f"{key}: {old.get(key, '<absent>')} -> {new.get(key, '<absent>')}")
    return changed


def load_run(run_dir: Path, extra: list[str], allow: bool, output_dir: Path | None = None):
    """(overrides to replay, composed config) for a saved run, refused when it names code
    outside the allow-list (unless `allow`), with a warning on stderr when the config tree has
    changed since the run."""
    run_dir = Path(run_dir)
    saved = runs.load_config(run_dir)
    overrides = replay_overrides(run_dir, extra)
    cfg = compose(overrides, output_dir)
    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    trust.check(task, source=str(run_dir), trust=allow)
    changed = drift(saved, task, extra)
    if changed:
        shown = "\n  ".join(changed[:10]) + (f"\n  ... {len(changed) - 10} more"
                                             if len(changed) > 10 else "")
        print(f"warning: the config tree has changed since {run_dir} ran; these keys differ "
              f"from its saved config:\n  {shown}", file=sys.stderr)
    return overrides, cfg


def quote(value: str) -> str:
    """A string as a quoted Hydra override value (paths may hold spaces or `=`)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def command_line(argv: list[str]) -> list[str]:
    """The Hydra command line for `resume=RUN_DIR`: the run's own overrides, then the extra
    ones given, with RUN_DIR as the run folder and its .hydra/ left as the run wrote it
    (`hydra.output_subdir=null`). Other command lines are returned unchanged."""
    args = argv[1:]
    allow = "--trust" in args
    args = [a for a in args if a != "--trust"]
    given = [a for a in args if a.split("=", 1)[0].lstrip("+") == "resume"]
    value = given[-1].split("=", 1)[1] if given and "=" in given[-1] else None
    if value is None or value.strip().lower() in ("", "true", "false", "null", "none"):
        if allow:
            raise UserError("--trust applies to resume=RUN_DIR only")
        return argv
    if "-m" in args or "--multirun" in args:
        raise UserError(
            "resume=RUN_DIR continues one run; to resume a sweep, rerun its command with "
            "hydra.sweep.dir=<its folder> resume=true"
        )
    run_dir = Path(value).expanduser().resolve()
    extra = [a for a in args if a not in given]
    overrides, _ = load_run(run_dir, extra, allow)
    return [argv[0], *overrides, f"resume={quote(run_dir)}",
            f"hydra.run.dir={quote(run_dir)}", "hydra.output_subdir=null"]


def prepare(run_dir: Path) -> Path | None:
    """Make a run folder ready to continue; returns last.ckpt, or None to start from scratch.

    Temporary files of a write that was killed are removed; without last.ckpt, a best.ckpt
    left by an attempt killed between its two writes is removed too, so that ModelCheckpoint
    does not save the new run's best as best-v1.ckpt beside it.
    """
    folder = Path(run_dir) / runs.CHECKPOINT_DIR
    for stale in folder.glob(".*.tmp") if folder.is_dir() else []:
        stale.unlink(missing_ok=True)
    last = runs.last_checkpoint(run_dir)
    if last is None:
        for stale in folder.glob("*.ckpt") if folder.is_dir() else []:
            stale.unlink()
    info = runs.read_json(Path(run_dir) / runs.RUN_FILE) if runs.run_status(run_dir) else {}
    resumed = list(info.get("resumed", []))
    if info:
        resumed.append({"time": datetime.now().astimezone().isoformat(timespec="seconds"),
                        "from": str(last) if last else None, "status": info.get("status")})
        runs.note(run_dir, resumed=resumed)
    return last


def finished(run_dir: Path) -> dict:
    """The metrics of a run that has finished already; nothing in its folder is rewritten."""
    from resnet_exp import console

    metrics = runs.read_json(Path(run_dir) / runs.METRICS_FILE)
    console.console.print(f"[bold]{run_dir}[/bold] finished already: not run again")
    return metrics


def logger_kwargs(node: DictConfig, purge_step: int | None) -> dict:
    """TensorBoard hides the events a resumed run logs again: SummaryWriter(purge_step) marks
    every event at or after that step in the folder's older files as superseded."""
    target = str(node.get("_target_", ""))
    if purge_step is None or not target.endswith("TensorBoardLogger"):
        return {}
    return {"purge_step": purge_step}
