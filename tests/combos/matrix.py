"""The combination matrix: every option of every group the brief names, each pair of options of
two groups in at least one cell (allpairspy), each cell a run of one epoch and a few batches.

The groups come from conf/ (tree.py), so an option added to a group enters the matrix by itself.
What cannot run on this machine, what the framework refuses to combine, and what fails today
are said below, rule by rule, with the reason; shrink.py makes each option small.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from itertools import combinations

from allpairspy import AllPairs

from combos.tree import analyses, crops, families, launchers, loggers, node, options, reads_files

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
# Pairs that fail today (reported with their commands; docs/testing.md). They stay out of the
# pairwise cells, so that the other pairs of a cell they would spoil are still tested, and each
# is one cell of its own, expected to fail (`pytest --runxfail tests/combos -k known` runs them):
# the reason, the pair (a value, or a test of the value), and the dimension a row changes.
KNOWN = {
    "a SIGTERM to a joblib sweep whose job leaves a worker idle (one job, two workers): the job "
    "dies unrecorded (run.json stays `running`, no last.ckpt), the sweep waits out "
    "ForwardSignals' 120 s grace and exits 143, loky's resource tracker prints KeyError "
    "tracebacks (likely: the idle worker dies of the forwarded SIGTERM at once and loky ends the "
    "pool, busy worker included; two busy workers are both interrupted)":
        ({"launcher": "joblib", "resume": "killed"}, "resume"),
    "a random-resized crop (augment.per_image, as a folder set's files are read) and a kill "
    "mid-epoch: the resumed run ends with other metrics than its twin; torchvision's crop draws "
    "from the global generator inside the DataLoader, none of the streams seeding.py replays":
        ({"augmentation": crops, "resume": "killed"}, "resume"),
}


# Cells that fail some of the time, with what they print: each is run, and expected to fail
# (not strict: it passes as often). Its values, and the family's member (None: any).
INTERMITTENT = {
    "trainer=fast (bf16-mixed) with augmentation=trivialaugment: a few steps in, weight tensors "
    "turn NaN with a finite loss (the non-finite guard stops the run: failed), in some of the "
    "runs of the same command and seed: cells 039 (plain34, AdamW) in 2 of 2 full `make "
    "test-combos` runs and 3 of 4 alone, 053 (transfer, AdamW, a kill) in 1 of 3; the plain "
    "command with augmentation=none: 0 of 6. Where it draws what no seed fixes is not yet found":
        ({"trainer": "fast", "augmentation": "trivialaugment"}, None),
}


def _holds(values: dict, pair: dict) -> bool:
    return all(values.get(k) is not None and (v(values[k]) if callable(v) else values[k] == v)
               for k, v in pair.items())


def _known(values: dict) -> str | None:
    """The reason of the known failure `values` holds, if any."""
    return next((reason for reason, (pair, _) in KNOWN.items() if _holds(values, pair)), None)


def refused(values: dict, model: str) -> bool:
    """Whether the framework refuses this member of the row's family with the row's trick:
    zero_init_residual on a plain net ("a plain net has no shortcut to start from",
    resnet_exp/models/resnet.py)."""
    sets = node("trick", values["trick"]).get("model", {}) if values.get("trick") else {}
    return bool(sets.get("zero_init_residual")) and node("model", model).get("residual") is False


def conflict(values: dict) -> str | None:
    """The dimension to change where `values` (a cell, or part of one) holds a known failure or
    options that each run alone and the framework refuses together (each refusal is its own,
    with a message); None where they run together."""
    if reason := _known(values):
        return KNOWN[reason][1]
    return refusal(values)


def refusal(values: dict) -> str | None:
    v = values.get
    if v("trainer") == "ddp" and v("launcher") not in (None, NO_LAUNCHER):
        # "trainer.devices=2 with strategy ddp inside a local sweep (-m)": its ranks would re-run
        # the sweep; ddp_spawn, which would not, is refused too (training/distributed.py)
        return "launcher"
    if v("monitor") == "val/acc_ema" and v("ema") == "off":
        return "ema"  # no EMA weights, no val/acc_ema to checkpoint by
    augmentation, data = v("augmentation"), v("data")
    if augmentation and data and crops(augmentation):
        # in-memory sets hold images resized already: "random_resized_crop needs the full images"
        if not reads_files(data):
            return "data"
    analysis, model = v("analysis"), v("model")
    if analysis and model in NO_BLOCKS and "lesion" in analyses(analysis):
        return "analysis"  # refused before training: "has no residual-style blocks to remove"
    trick = v("trick")
    if trick and model:
        # a trick that sets model keys (zero_init: zero_init_residual) is for the families whose
        # builder takes them (the ResNets); resnet_exp/core/signatures.py refuses it elsewhere
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


def _cost(row: dict) -> int:
    return sum(row[dimension] != cheap for dimension, cheap in CHEAP.items())


def _cheapened(rows: list[dict]) -> list[dict]:
    """Each slow value made cheap, and then each row dropped, where every pair it alone would
    lose is covered by another row: the slowest rows first."""
    counts = defaultdict(int)
    for row in rows:
        for pair in pairs(row):
            counts[pair] += 1
    rows = sorted(rows, key=_cost, reverse=True)
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
    kept = []
    for row in rows:
        if all(counts[p] > 1 for p in pairs(row)):
            for p in pairs(row):
                counts[p] -= 1
        else:
            kept.append(row)
    return kept


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
    known: str | None = None  # the reason it fails today (KNOWN)

    @property
    def id(self) -> str:
        shown = {k: v for k, v in self.values.items() if v not in (None, "none", "off")}
        shown["model"] = self.model
        return (f"{self.number:03d}-{'known-' if self.known else ''}"
                + ",".join(f"{k}={v}" for k, v in shown.items()))

    def __getattr__(self, name: str):
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def _member(row: dict, group: list[str], turn: int) -> str:
    """The family's member whose turn it is, or the next one the row's trick does not refuse."""
    return next(m for m in group[turn % len(group):] + group if not refused(row, m))


@cache
def cells() -> tuple[Cell, ...]:
    """The rows, each running one member of its model family in turn, then one cell more for
    each model option that got no turn, then one cell for each known failure."""
    members, turn, made = families(), defaultdict(int), []
    for row in rows():
        made.append(Cell(len(made), row, _member(row, members[row["model"]], turn[row["model"]])))
        turn[row["model"]] += 1
    ran = {cell.model for cell in made}
    for name, group in members.items():
        for model in (m for m in group if m not in ran):
            row = next(r | {"model": name} for r in rows()
                       if not conflict(r | {"model": name}) and not refused(r, model))
            made.append(Cell(len(made), row, model))
    params = parameters()
    for reason, (pair, _) in KNOWN.items():
        values = {k: v if not callable(v) else next(x for x in params[k] if x and v(x))
                  for k, v in pair.items()}
        row = next(r | values for r in rows()
                   if not refusal(r | values) and _known(r | values) == reason)
        made.append(Cell(len(made), row, _member(row, members[row["model"]], 0), reason))
    return tuple(made)
