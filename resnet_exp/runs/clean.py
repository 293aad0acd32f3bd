"""`python -m resnet_exp.runs clean`: delete the runs a filter selects, and nothing else.

What it deletes is listed first, with sizes, and asked about on a terminal (`--yes` answers for
a script; without a terminal and without `--yes` it refuses, deleting nothing). A run that a
process writes in is never deleted: it holds its folder's lock (record.lock), and `clean` deletes
a folder only while holding that lock itself (record.held), so no run can start writing there in
the meantime, and only if run.json still says what it said when listed. A run that says
`running` while no process holds it was killed ("stale"): deleted only when asked for by name
(`--stale`). A sweep folder goes with its last job: a sweep is its jobs plus Hydra's
multirun.yaml (and an Optuna search's optuna.db), which mean nothing without them.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.text import Text

from resnet_exp.core.errors import UserError
from resnet_exp.runs import read, record
from resnet_exp.runs.listing import STALE, Entry, counted, print_table, size_text


@dataclass
class Plan:
    delete: list[Entry]
    live: list[Entry]  # selected, but a process writes in them: left alone
    stale: list[Entry]  # selected, but stale and not asked for: left alone
    sweeps: list[Path]  # sweep folders whose every job is in `delete`

    @property
    def size(self) -> int:
        return sum(e.size for e in self.delete)


def plan(selected: list[Entry], stale: bool) -> Plan:
    live = [e for e in selected if e.status == "running"]  # listing.read_entry tried the lock
    left = [e for e in selected if e.status == STALE and not stale]
    delete = [e for e in selected if e.status != "running" and (e.status != STALE or stale)]
    return Plan(delete, live, left, emptied_sweeps(delete))


def emptied_sweeps(delete: list[Entry]) -> list[Path]:
    jobs: dict[Path, set[Path]] = {}
    for entry in delete:
        if read.is_sweep_dir(entry.path.parent):
            jobs.setdefault(entry.path.parent, set()).add(entry.path)
    return [sweep for sweep, gone in jobs.items() if set(read.find_runs(sweep)) <= gone]


def _paths(out: Console, title: str, paths: list[Path]) -> None:
    if paths:
        out.print(Text(title), soft_wrap=True)
        for path in paths:
            out.print(Text(f"  {path}"), soft_wrap=True, highlight=False)


def print_plan(found: Plan, out: Console) -> None:
    title = f"{counted(len(found.delete))} to delete, {size_text(found.size)}:"
    out.print(Text(title, style="bold"), soft_wrap=True)
    if found.delete:
        print_table(found.delete, out)
    _paths(out, "and the sweep folders left with no job:", found.sweeps)
    _paths(out, "left alone, a process writes in them:", [e.path for e in found.live])
    _paths(out, "left alone, stale (run.json says running, no process holds the folder; "
                "--stale deletes them):", [e.path for e in found.stale])


def on_terminal() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):  # closed, or replaced by an object without a terminal
        return False


def confirmed(out: Console) -> bool:
    try:
        answer = out.input("delete them? \\[y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def delete(entry: Entry) -> str | None:
    """Delete a run's folder; why not, where it was left."""
    with record.held(entry.path) as free:
        if not free:
            return "a process writes in it now"
        now = read.run_status(entry.path)
        if now != entry.recorded:
            return f"its status changed to {now} since it was listed"
        try:
            shutil.rmtree(entry.path)
        except OSError as e:
            return f"cannot delete it ({e.strerror or e}); part of it may be gone"
    return None


def clean(selected: list[Entry], stale: bool, yes: bool, out: Console) -> int:
    """Delete `selected` as the module's docstring says; 0 when all of the plan went, 1 when
    the user said no or a run could not be deleted."""
    found = plan(selected, stale)
    if found.delete and not yes and not on_terminal():
        raise UserError(f"{counted(len(found.delete))} ({size_text(found.size)}) to delete: "
                        "with no terminal to ask on, add --yes to delete them (the same filters "
                        "with `list` show which)")
    print_plan(found, out)
    if not found.delete:
        return 0
    if not yes and not confirmed(out):
        out.print("nothing deleted")
        return 1
    failed = 0
    for entry in found.delete:
        why = delete(entry)
        if why:
            failed += 1
            out.print(Text(f"not deleted ({why}): {entry.path}"), soft_wrap=True)
    for sweep in found.sweeps:
        if not read.find_runs(sweep):  # a job that was not deleted keeps its sweep
            shutil.rmtree(sweep, ignore_errors=True)
    out.print(Text(f"deleted {counted(len(found.delete) - failed)}"), soft_wrap=True)
    return 1 if failed else 0
