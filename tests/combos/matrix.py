"""The combination matrix: every option of every group the brief names, each pair of options of
two groups in at least one cell (allpairspy), each cell a run of one epoch and a few batches.

The groups are read from conf/ when the matrix is made, so an option added to a group enters it
by itself. What cannot run on this machine, and what is made smaller so that ~100 runs fit in a
few minutes on 2 cores, is said below, rule by rule, with its reason. Nothing here imports torch:
the matrix is made when pytest collects tests/combos/, on each xdist worker.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from itertools import combinations

from allpairspy import AllPairs
from omegaconf import OmegaConf

from resnet_exp.config import CONF_DIR

# Options that cannot run here, with the reason. Everything else of a group is in the matrix.
EXCLUDED = {
    # torchvision checks the pickle batches against the MD5 sums of the real download, which
    # this machine cannot fetch; the same images (CIFAR-10 as JPEG files, ../shared/data) run
    # through data=imagefolder and data=imagenet below
    ("data", "cifar10"): "needs the CIFAR-10 download (torchvision checks its MD5 sums)",
    ("data", "cifar100"): "needs the CIFAR-100 download (torchvision checks its MD5 sums)",
    # submitit's SLURM executor calls sbatch; there is no SLURM cluster here
    ("launcher", "slurm"): "needs a SLURM cluster (sbatch)",
    ("launcher", "submitit_slurm"): "needs a SLURM cluster (sbatch)",
    # submitit's local executor runs each job in a process of its own, as joblib's worker
    # does; tests/test_sweeps.py runs it. In the matrix it would add ~11 sweep cells of 10-15 s
    # each on this 2-core machine, past the 6-minute budget of `make test-combos`.
    ("launcher", "submitit_local"): "covered by tests/test_sweeps.py; over the time budget here",
}
# The metrics a run may checkpoint by (`monitor`): not a group, the module's validation metrics;
# val/acc_ema exists only with EMA weights (module.ema_decay, off or on).
MONITORS = ("val/acc", "val/loss", "val/acc_ema")
EMA = ("off", "on")
# A cell runs alone (`none`: `python -m resnet_exp`, no -m) or as a one-job sweep (-m) under
# each of Hydra's launchers; `killed`: SIGTERM in its first epoch, then `resume=`.
NO_LAUNCHER = "none"
RESUMES = ("none", "killed")


def options(group: str) -> list[str]:
    """A group's options, as `python -m resnet_exp --help` lists them (resnet_exp/usage.py)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@cache
def launchers() -> list[str]:
    """Hydra's launcher group, its plugins' options included (basic, joblib, submitit_*)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return GlobalHydra.instance().config_loader().get_group_options("hydra/launcher")


def node(group: str, option: str) -> dict:
    """An option's keys with those of the files its defaults list pulls in (its base, a sibling
    option), unresolved: what the rules below read. The cells themselves compose with Hydra;
    composing ~60 options here would cost ~10 s at every collection."""
    return _merged(f"{group}/{option}")


@cache
def _merged(path: str) -> dict:
    raw = OmegaConf.load(CONF_DIR / f"{path}.yaml")
    folder = path.rpartition("/")[0]
    merged = OmegaConf.create()
    for entry in raw.get("defaults", []):
        if isinstance(entry, str) and entry != "_self_":  # not `override /group: option`
            name = entry.split("@")[0]
            inner = name[1:] if name.startswith("/") else f"{folder}/{name}".lstrip("/")
            merged = OmegaConf.merge(merged, _merged(inner))
    body = OmegaConf.to_container(raw)
    body.pop("defaults", None)
    return OmegaConf.to_container(OmegaConf.merge(merged, body))


def family(model: str) -> str:
    """A model option's family: the builder it names (its backbone's, for transfer models)."""
    return node("model", model)["_target_"].rsplit(".", 1)[-1]


@cache
def families() -> dict[str, list[str]]:
    members = defaultdict(list)
    for model in options("model"):
        members[family(model)].append(model)
    return dict(members)


def loggers() -> list[str]:
    """Each logger alone, and all of them at once (`logger=[tensorboard,mlflow]` and the like:
    each must still write its own files beside the others)."""
    alone = options("logger")
    return [*alone, f"[{','.join(alone)}]"]


def reads_files(data: str) -> bool:
    """Whether a data option reads image files (resnet_exp/data/folders.py), the only ones that
    take a random-resized crop of the full image."""
    return node("data", data)["_target_"].startswith("resnet_exp.data.folders.")


def parameters() -> dict[str, list[str]]:
    """The matrix's dimensions and their values, largest first (allpairspy fills the pairs of
    the first ones first). Each value is an option of conf/, less EXCLUDED."""
    groups = {
        "trick": [None, *options("trick")],
        "scheduler": options("scheduler"),
        "augmentation": options("augmentation"),
        "analysis": [None, *options("analysis")],
        "model": sorted(families()),
        "data": options("data"),
        "trainer": options("trainer"),
        "logger": loggers(),
        "launcher": [NO_LAUNCHER, *launchers()],
        "optimizer": options("optimizer"),
        "callbacks": options("callbacks"),
        "monitor": list(MONITORS),
        "ema": list(EMA),
        "resume": list(RESUMES),
    }
    return {g: [v for v in values if (g, v) not in EXCLUDED] for g, values in groups.items()}


# The families whose structure() declares no blocks (resnet_exp/models/small.py: BaselineCNN's
# stages are conv pairs without a shortcut to fall back on), which the lesion analysis refuses.
NO_BLOCKS = {"BaselineCNN"}


def analyses(option: str) -> set[str]:
    """The analyses an analysis option runs: its nodes that name a class."""
    return {k for k, v in node("analysis", option).items() if isinstance(v, dict)}


def refused(values: dict, model: str) -> bool:
    """Whether the framework refuses this member of the row's family with the row's trick:
    zero_init_residual on a plain net ("a plain net has no shortcut to start from",
    resnet_exp/models/resnet.py)."""
    sets = node("trick", values["trick"]).get("model", {}) if values.get("trick") else {}
    return bool(sets.get("zero_init_residual")) and node("model", model).get("residual") is False


def conflict(values: dict) -> str | None:
    """The dimension to change where options that each run alone do not run together, by the
    project's own rules (each refusal is the framework's, with a message of its own); None
    where they do. `values` may be part of a cell."""
    v = values.get
    if v("monitor") == "val/acc_ema" and v("ema") == "off":
        return "ema"  # no EMA weights, no val/acc_ema to checkpoint by
    augmentation, data = v("augmentation"), v("data")
    if augmentation and data and node("augmentation", augmentation).get("random_resized_crop"):
        # in-memory sets hold images resized already: "random_resized_crop needs the full images"
        if not reads_files(data):
            return "data"
    analysis, model = v("analysis"), v("model")
    if analysis and model in NO_BLOCKS and "lesion" in analyses(analysis):
        return "analysis"  # refused before training: "has no residual-style blocks to remove"
    trick = v("trick")
    if trick and model:
        # a trick that sets model keys (zero_init: zero_init_residual) is for the families whose
        # builder takes them (the ResNets); resnet_exp/signatures.py refuses it elsewhere
        wanted = set(node("trick", trick).get("model", {}))
        if not wanted <= {key for member in families()[model] for key in node("model", member)}:
            return "trick"
    return None


# What makes a cell slow, and the value that does not: a cell keeps a slow value only where it
# covers a pair no other cell covers. A DDP run, a sweep whose job runs in a worker process and
# a kill with its resume and twin each start 2-3 interpreters.
CHEAP = {"resume": "none", "trainer": "smoke", "launcher": NO_LAUNCHER, "analysis": None}


def _repaired(row: dict, params: dict) -> dict:
    while dimension := conflict(row):
        row = row | {dimension: next(value for value in params[dimension]
                                     if conflict(row | {dimension: value}) != dimension)}
    return row


def pairs(row: dict) -> set[tuple]:
    return {((a, row[a]), (b, row[b])) for a, b in combinations(row, 2)}


def _missing(rows: list[dict], params: dict) -> list[tuple]:
    """The pairs of values no row covers, of those that may run together."""
    covered = set().union(*map(pairs, rows))
    return [((a, x), (b, y)) for a, b in combinations(params, 2)
            for x in params[a] for y in params[b]
            if ((a, x), (b, y)) not in covered and conflict({a: x, b: y}) is None]


def _covering(pair: tuple, missing: set, params: dict) -> dict:
    """A row holding `pair`, each other value chosen to cover the most missing pairs (AETG)."""
    row = dict(pair)
    for dimension, values in params.items():
        if dimension in row:
            continue
        fits = [v for v in values if conflict(row | {dimension: v}) is None]
        row[dimension] = max(fits, key=lambda v: sum(
            ((d, row[d]), (dimension, v)) in missing or ((dimension, v), (d, row[d])) in missing
            for d in row))
    return {d: row[d] for d in params}


def _cheapened(rows: list[dict]) -> list[dict]:
    counts = defaultdict(int)
    for row in rows:
        for pair in pairs(row):
            counts[pair] += 1
    for i, row in enumerate(rows):
        for dimension, cheap in CHEAP.items():
            if row[dimension] == cheap or conflict(row | {dimension: cheap}):
                continue
            own = [p for p in pairs(row) if (dimension, row[dimension]) in p]
            if all(counts[p] > 1 for p in own):
                for p in own:
                    counts[p] -= 1
                rows[i] = row = row | {dimension: cheap}
                for p in pairs(row):
                    if (dimension, cheap) in p:
                        counts[p] += 1
    return rows


@cache
def rows() -> tuple[dict, ...]:
    """allpairspy's rows, each changed where it holds options that cannot run together, then
    rows for the pairs those changes lost, then the slow values dropped where other rows cover
    their pairs. (allpairspy's own filter_func backtracks: 13 s for these 14 dimensions.)"""
    params = parameters()
    made = [_repaired(dict(zip(params, row, strict=True)), params)
            for row in AllPairs(list(params.values()))]
    missing = _missing(made, params)
    while missing:
        made.append(_covering(missing[0], set(missing), params))
        missing = _missing(made, params)
    return tuple(_cheapened(made))


@dataclass(frozen=True)
class Cell:
    number: int
    values: dict  # dimension -> value
    model: str  # the family's member this cell runs

    @property
    def id(self) -> str:
        shown = {k: v for k, v in self.values.items() if v not in (None, "none", "off")}
        shown["model"] = self.model
        return f"{self.number:03d}-" + ",".join(f"{k}={v}" for k, v in shown.items())

    def __getattr__(self, name: str):
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


@cache
def cells() -> tuple[Cell, ...]:
    """The rows, each running one member of its model family in turn (the next one the row's
    trick does not refuse), then one cell more for each model option that got no turn."""
    members, turn, made = families(), defaultdict(int), []
    for row in rows():
        group, start = members[row["model"]], turn[row["model"]]
        model = next(m for m in group[start % len(group):] + group if not refused(row, m))
        made.append(Cell(len(made), row, model))
        turn[row["model"]] += 1
    ran = {cell.model for cell in made}
    for name, group in members.items():
        for model in (m for m in group if m not in ran):
            row = next(r | {"model": name} for r in rows()
                       if not conflict(r | {"model": name}) and not refused(r, model))
            made.append(Cell(len(made), row, model))
    return tuple(made)
