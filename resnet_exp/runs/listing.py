"""The runs on disk as `python -m resnet_exp.runs` shows them: one `Entry` per run folder (sweep
jobs included) with its status, settings, key metrics, age and size; the filters that `list` and
`clean` share; and the table.

The table never cuts what a user copies or compares. A cell would: rich fitted an 80-column
terminal with `…/outputs/runs/2026-12-07_06-42-59_resnet20_digi…`. So each run's folder prints
whole on a line of its own under its row (soft-wrapped: a terminal folds it for the eye, a copy
gets it in one piece), names and numbers are never shortened, the settings cell wraps, and where
the row is still too wide the size, age and best columns go, in that order, with a line saying so.
"""

from __future__ import annotations

import fnmatch
import os
import re
import socket
import textwrap
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.text import Text

from resnet_exp.core.config import short_value
from resnet_exp.core.errors import UserError
from resnet_exp.runs import read, record
from resnet_exp.runs.compare import NOT_SETTINGS, differing_keys, read_run
from resnet_exp.runs.sweep_table import STATUS_STYLE as SWEEP_STYLE

STALE = "stale"  # run.json says running, but no process holds the folder: it was killed
STATUS_STYLE = {**SWEEP_STYLE, STALE: "yellow"}  # the sweep table's colours, and stale's
AGE_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}  # --older-than's units
GAP = "  "
SETTINGS = 2  # the column that wraps
MIN_SETTINGS = 16  # narrower, and most `key=value` pairs would break mid-word


@dataclass
class Entry:
    path: Path
    status: str  # compare.read_run's (its words for a damaged folder), or STALE
    recorded: str | None  # run.json's status as written: `clean` deletes only if it still is
    name: str
    started: float  # POSIX time: run.json's start_time, else the folder's last change
    settings: dict[str, str]  # the group choices, then what the overrides set
    metrics: dict
    monitor: str
    tags: list[str]
    info: dict  # run.json
    size: int  # bytes

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - self.started)


def writing(path: Path, info: dict) -> bool:
    """Whether a process writes in the run folder now: it holds the folder's lock (record.lock),
    or it runs on another machine, whose locks this one may not see (NFS without lock sharing)."""
    host = info.get("host")
    if host and host != socket.gethostname():
        return True
    with record.held(path) as free:
        return not free


def disk_size(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):  # links not followed: their targets are not the run
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:  # deleted meanwhile
                pass
    return total


def _started(path: Path, info: dict) -> float:
    try:
        return datetime.fromisoformat(str(info["start_time"])).timestamp()
    except (KeyError, ValueError):
        return path.stat().st_mtime


def choices(path: Path) -> dict[str, str]:
    """The option of each config group that the run trained with (not Hydra's own groups)."""
    try:
        chosen = read.read_choices(path)
    except Exception:  # a damaged hydra.yaml: the overrides still say what the run set
        chosen = {}
    return {k: str(v) for k, v in chosen.items() if v is not None
            and not k.startswith("hydra") and k.split(".")[0] not in NOT_SETTINGS}


def read_entry(path: Path) -> Entry:
    """A run folder as the table shows it; never raises on a damaged one."""
    run = read_run(path)
    try:
        info = read.read_json(path / "run.json")
    except (OSError, ValueError):
        info = {}
    status = run.status
    if status == "running" and not writing(path, info):  # only a `running` run's lock is tried
        status = STALE
    monitor = str(run.config.get("monitor") or "val/acc")
    tags = info.get("tags") or run.config.get("tags") or []
    return Entry(path, status, info.get("status"), str(info.get("name") or path.name),
                 _started(path, info), {**choices(path), **run.settings}, run.metrics,
                 "val/acc" if "${" in monitor else monitor,
                 [str(t) for t in tags] if isinstance(tags, list) else [str(tags)], info,
                 disk_size(path))


def entries(root: Path) -> list[Entry]:
    """Every run below `root` (a run folder, a sweep, outputs/), newest first."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder; runs are written to outputs/ of the folder "
                        "they were started in (give that outputs/, a sweep or a run folder)")
    found = sorted((read_entry(p) for p in read.find_runs(root)),
                   key=lambda e: read.natural_key(e.path))
    return sorted(found, key=lambda e: -e.started)


def age(text: str) -> float:
    """`--older-than`'s value in seconds.

    >>> age("12h"), age("7d"), age("1.5w")
    (43200.0, 604800.0, 907200.0)
    """
    match = re.fullmatch(r"(\d+(?:\.\d*)?)([hdw])", text.strip())
    if not match:
        raise ValueError(f"{text}: give a number and a unit, h, d or w (12h, 7d, 2w)")
    return float(match[1]) * AGE_UNITS[match[2]]


def select(found: list[Entry], statuses: list[str] | None = None, tags: list[str] | None = None,
           name: str | None = None, older_than: float | None = None) -> list[Entry]:
    """The entries with one of `statuses`, every tag of `tags`, a name or folder name matching
    the glob `name`, and an age over `older_than` seconds (each filter that is given)."""
    return [e for e in found if (not statuses or e.status in statuses)
            and set(tags or ()) <= set(e.tags)
            and (name is None or fnmatch.fnmatchcase(e.name, name)
                 or fnmatch.fnmatchcase(e.path.name, name))
            and (older_than is None or e.age_s > older_than)]


def size_text(size: float) -> str:
    """A size in bytes as people read it, in powers of 1024.

    >>> size_text(512), size_text(4_400_000), size_text(3 * 2**30)
    ('512 B', '4.2 MiB', '3.0 GiB')
    """
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}"
    raise AssertionError("unreachable")


def age_text(seconds: float) -> str:
    """An age in its largest whole unit that still leaves some precision (36h, not 1d).

    >>> age_text(42), age_text(3 * 3600), age_text(9 * 86400), age_text(60 * 86400)
    ('42s', '3h', '9d', '8w')
    """
    for limit, unit, scale in ((90, "s", 1), (90 * 60, "m", 60), (36 * 3600, "h", 3600),
                               (14 * 86400, "d", 86400)):
        if seconds < limit:
            return f"{seconds // scale:.0f}{unit}"
    return f"{seconds // AGE_UNITS['w']:.0f}w"


def counted(n: int) -> str:
    return f"{n} run{'s' * (n != 1)}"


def _number(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def _columns(found: list[Entry]) -> tuple[list[str], list[list[str]]]:
    """The header and each run's cells: status, name, settings, test/acc, best, age, size."""
    keys = differing_keys([e.settings for e in found]) if len(found) > 1 else []
    keys = keys or [k for k in ("model", "data") if any(k in e.settings for e in found)]
    monitors = {e.monitor for e in found}
    best = f"{monitors.pop()}_best" if len(monitors) == 1 else "best (own monitor)"
    rows = [[e.status, e.name,
             " ".join(f"{k}={short_value(e.settings[k])}" for k in keys if k in e.settings) or "-",
             _number(e.metrics, "test/acc"), _number(e.metrics, f"{e.monitor}_best"),
             age_text(e.age_s), size_text(e.size)] for e in found]
    return ["status", "name", "settings", "test/acc", best, "age", "size"], rows


def fit(header: list[str], rows: list[list[str]], width: int) -> dict[int, int]:
    """The width of each column kept at `width`: the size, age and best columns go (in that
    order) before the settings would wrap narrower than MIN_SETTINGS. A row of what is left
    that is still wider (a long name or value at 60 columns) is folded by the terminal, never
    cut."""
    natural = [max(map(len, column)) for column in zip(header, *rows, strict=True)]
    # a value is never broken: logger=[tensorboard,csv] on one line, if wider than the room
    word = max((len(w) for row in rows for w in row[SETTINGS].split()), default=0)
    need = min(natural[SETTINGS], max(MIN_SETTINGS, word))
    kept = list(range(len(header)))
    for drop in (6, 5, 4, None):
        others = sum(natural[i] for i in kept if i != SETTINGS) + len(GAP) * (len(kept) - 1)
        room = width - others
        if room >= need or drop is None:
            settings = min(natural[SETTINGS], max(room, need))
            return {i: settings if i == SETTINGS else natural[i] for i in kept}
        kept.remove(drop)
    raise AssertionError("unreachable")


def _lines(cells: list[str], widths: dict[int, int], style: str | None) -> list[Text]:
    """One row as lines of text, the settings cell wrapped to its width."""
    wrapped = textwrap.wrap(cells[SETTINGS], widths[SETTINGS], break_long_words=False,
                            break_on_hyphens=False) or [""]
    lines = []
    for n, part in enumerate(wrapped):
        line = Text()
        for i, width in widths.items():
            cell = part if i == SETTINGS else cells[i] if n == 0 else ""
            text = cell.rjust(width) if i > SETTINGS else cell.ljust(width)
            line.append(text, style=style if i == 0 else None)
            line.append(GAP)
        line.rstrip()
        lines.append(line)
    return lines


def print_table(found: list[Entry], out: Console) -> None:
    """A row per run and its folder on the line below, at the console's width."""
    header, rows = _columns(found)
    widths = fit(header, rows, out.width)
    for line in _lines(header, widths, None):
        out.print(line, style="bold", soft_wrap=True)
    for entry, cells in zip(found, rows, strict=True):
        for line in _lines(cells, widths, STATUS_STYLE.get(entry.status, "red")):
            out.print(line, soft_wrap=True)
        out.print(Text(f"  {entry.path}"), soft_wrap=True, highlight=False)
    dropped = [header[i] for i in range(len(header)) if i not in widths]
    if dropped:
        out.print(Text(f"({', '.join(dropped)}: left out at {out.width} columns; a wider "
                       "terminal or a pipe shows them)"), soft_wrap=True)
