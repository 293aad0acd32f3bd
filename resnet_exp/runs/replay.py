"""Composing a saved run's config again: continued in its own folder (`resume`), into a new folder
(`reproduce`), or tested (`eval`).

A run is replayed the way Hydra recorded it: its `.hydra/overrides.yaml` over today's config tree,
then the user's extra overrides, which replace saved ones of the same key. Before anything is
built, the composed config must pass the allow-list (trust.py), and keys where it differs from
the saved `.hydra/config.yaml` (the config tree changed since the run) are named in a warning.
A run of an older layout is read through migrate.py (classes that moved since are named by
today's import paths); one of a newer layout is refused there.

Imports no torch: `__main__` replays `resume=RUN_DIR` before Hydra starts.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from resnet_exp.core import config
from resnet_exp.core.errors import UserError
from resnet_exp.runs import OVERRIDES_FILE, RUN_FILE, migrate, read, trust

# Keys of the replay machinery itself, never replayed from a run's saved overrides.
OWN_KEYS = ("resume",)
# A sweep's job replays as that one job: an Optuna trial's `hparams_search=...` sets MULTIRUN,
# and would start a new search.
ONE_JOB = "hydra.mode=RUN"


def _outside_the_tree(override: str) -> bool:
    """A group option that names a file outside conf/ (`experiment=../../elsewhere/evil`)."""
    parsed = config.parse_override(override)
    group = parsed.key_or_group
    if not (group.startswith("hydra/") or (config.CONF_DIR / group).is_dir()):
        return False
    value = str(parsed.value())
    return ".." in value or "/" in value or value.startswith(("~", "\\"))


def replay_overrides(run_dir: Path, extra: list[str], allow: bool, layout: int) -> list[str]:
    """The run's saved overrides (of its `layout`: migrate.py), minus those that `extra`
    replaces, then `extra`. Refused when the file could not have been written by a run: Hydra's
    own keys, or (unless `allow`) a group option outside the config tree."""
    source = run_dir / OVERRIDES_FILE
    try:
        saved = [o for o in migrate.overrides(read.read_overrides(run_dir), layout)
                 if config.override_key(o) not in OWN_KEYS]
    except Exception as e:  # yaml's, Hydra's parser's: no common base class
        raise UserError(f"{source} cannot be read as Hydra overrides ({type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}): the "
                        "file is damaged; a run folder cannot be replayed without it") from None
    for override in saved:
        if config.override_key(override).startswith("hydra"):
            raise UserError(
                f"{source} holds the Hydra override {override!r}, which a run never records: "
                "the file was edited; refusing to replay it"
            )
        if not allow and _outside_the_tree(override):
            raise UserError(
                f"refusing the config of {run_dir}: {override} reads a config file outside "
                f"conf/, which could hold any code. Read it; if you trust it, pass --trust"
            )
    replaced = {config.override_key(o) for o in extra}
    searchpath = read.read_searchpath(run_dir)
    if searchpath and "hydra.searchpath" not in replaced:  # the run's own config folders too
        if not allow:
            raise UserError(
                f"refusing the config of {run_dir}: it read config files from "
                f"{', '.join(searchpath)} besides conf/ (hydra.searchpath), which could hold any "
                "code. Read them; if you trust them, pass --trust")
        extra = extra + [f"hydra.searchpath=[{','.join(searchpath)}]"]
    if "cpu_threads" not in replaced:  # the same float sums as the run: its thread count
        threads = _recorded_threads(run_dir)
        extra = extra + ([f"cpu_threads={threads}"] if threads else [])
    # a key the run added (`+key=...`) is not in the tree: a new value for it adds it too
    added = {config.override_key(o) for o in saved if o.startswith("+")}
    extra = [f"++{o}" if config.override_key(o) in added and o[0] not in "+~" else o
             for o in extra]
    return [o for o in saved if config.override_key(o) not in replaced] + extra


def _recorded_threads(run_dir: Path) -> int | None:
    """The intra-op CPU threads the run computed with (run.json), None where not recorded."""
    try:
        threads = read.read_json(Path(run_dir) / RUN_FILE).get("cpu_threads")
    except (OSError, ValueError):
        return None
    return threads if isinstance(threads, int) and threads > 0 else None


def _flat(node, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def drift(saved: DictConfig, composed: DictConfig, extra: list[str], layout: int) -> list[str]:
    """Keys whose value differs between the run's saved config (of its `layout`: migrate.py)
    and today's composition of its overrides, leaving out those the user overrode (`extra`) and
    the replay's own keys."""
    ignore = {config.override_key(o) for o in extra} | set(OWN_KEYS) | {"hydra"}
    old = _flat(migrate.config(OmegaConf.to_container(saved, resolve=False), layout))
    new = _flat(OmegaConf.to_container(composed, resolve=False))
    changed = []
    for key in sorted(old.keys() | new.keys()):
        if any(key == i or key.startswith(i + ".") or key.startswith(i + "/") for i in ignore):
            continue
        if old.get(key, "<absent>") != new.get(key, "<absent>"):
            changed.append(f"{key}: {old.get(key, '<absent>')} -> {new.get(key, '<absent>')}")
    return changed


# Keys whose default has changed in a way that changes a run's float sums (module.channels_last:
# false, then auto): a replay keeps the value the run had, unless an override gives another.
KEPT_AS_RUN = ("module.channels_last",)


def _roots(overrides: list[str], extra: list[str], run_dir: Path, output_dir: Path | None):
    """Where a replayed run may name files: its folders, and the places the user's own
    configuration names: today's tree with the run's group choices (inside conf/, checked by
    `replay_overrides`) and the command line's overrides, none of the run's other values."""
    chosen = [o for o in overrides if o[0] not in "+~" and "." not in config.override_key(o)
              and o not in extra]
    try:
        mine = config.compose(chosen + extra, with_hydra=True)
    except UserError:  # the command line's overrides need the run's added keys: no roots of theirs
        mine = config.compose(chosen, with_hydra=True)
    return trust.roots(trust.resolved(mine, output_dir or run_dir), run_dir, output_dir)


def replay(run_dir: Path, extra: list[str], allow: bool, output_dir: Path | None = None):
    """(overrides to replay, composed config) for a saved run, refused when it names code
    outside the allow-list (unless `allow`) or is of a newer layout than this code reads, with a
    warning on stderr when the config tree has changed since the run."""
    run_dir = Path(run_dir)
    layout = migrate.check(run_dir)  # before anything of the folder is read by today's layout
    saved = read.load_config(run_dir)
    overrides = replay_overrides(run_dir, extra, allow, layout)
    roots = None if allow else _roots(overrides, extra, run_dir, output_dir)
    cfg = config.compose(overrides, output_dir, with_hydra=True)
    given = {config.override_key(o) for o in extra}
    kept = [f"{key}={config.text(OmegaConf.select(saved, key))}" for key in KEPT_AS_RUN
            if key not in given and OmegaConf.select(saved, key, default=None) is not None
            and OmegaConf.select(saved, key) != OmegaConf.select(cfg, key, default=None)]
    if kept:  # a default changed since the run: the replay computes as the run did
        overrides += kept
        cfg = config.compose(overrides, output_dir, with_hydra=True)
    if not allow:  # the hydra node too: its callbacks run
        trust.check(cfg, source=str(run_dir), run_dir=output_dir or run_dir, allowed_roots=roots)
    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    # the thread count replay_overrides pins from run.json differs from the saved `auto` by design
    pinned = [o for o in overrides if config.override_key(o) == "cpu_threads"]
    changed = drift(saved, task, extra + kept + pinned, layout)
    if changed:
        shown = "\n  ".join(changed[:10]) + (f"\n  ... {len(changed) - 10} more"
                                             if len(changed) > 10 else "")
        print(f"warning: the config tree has changed since {run_dir} ran; these keys differ "
              f"from its saved config:\n  {shown}", file=sys.stderr)
    return overrides, cfg
