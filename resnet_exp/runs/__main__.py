"""`python -m resnet_exp.runs list|show|clean` (or `resnet-exp runs ...`): the run folders on disk.

  list [ROOT]   one row per run below ROOT (default outputs/; sweep jobs included, outputs/debug/
                only when named), newest first: status, name, the settings that differ between
                the listed runs (else model and data), test/acc, the monitored metric's best,
                age (since it started) and size, each run's folder whole on the line below.
                `stale`: run.json says running but no process holds the folder (it was killed).
  show RUN      what run.json records (status, times, the error of a failed run, overrides,
                code, host), the metrics, the files the folder holds, and the commands that
                resume, evaluate or reproduce it.
  upgrade [ROOT]  rewrites what runs of older versions wrote that today's viewers misread:
                event files with an HPARAMS experiment summary (earlier versions), with which
                TensorBoard shows every served run under that one run's columns
                (loggers/tensorboard.py); each file replaced whole, never one a process writes.
  clean [ROOT]  deletes the runs that --failed, --status, --older-than or --stale select (and
                --tag, --name narrow), listed first with their sizes and asked about on a
                terminal (--yes: without asking); never a run that a process writes in.

Filters, for list and clean: --status STATUS (repeatable), --tag TAG (every one given),
--name GLOB (the run's name or its folder's, e.g. '*resnet56*').
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

from resnet_exp.core import console as ui
from resnet_exp.core.console import command
from resnet_exp.core.errors import UserError
from resnet_exp.runs import CHECKPOINT_DIR, CONFIG_FILE, STATUSES, TENSORBOARD_DIR, read
from resnet_exp.runs.listing import (
    STALE,
    Entry,
    age,
    age_text,
    choices,
    counted,
    disk_size,
    entries,
    print_table,
    read_entry,
    select,
    size_text,
)

LABEL = 11  # the width of show's labels
LISTED_FILES = 6  # a folder with more files is shown as a count


def _line(out: Console, label: str, value: object) -> None:
    out.print(Text.assemble((f"{label:<{LABEL}}", "bold"), str(value)), soft_wrap=True,
              highlight=False)


def record_lines(entry: Entry) -> list[tuple[str, object]]:
    """show's first lines: what run.json records, those a run has."""
    info = entry.info
    git = info.get("git") or {}
    status = entry.status + (" (run.json says running; no process holds the folder)"
                             if entry.status == STALE else "")
    lines = [
        ("status", status), ("name", entry.name), ("tags", " ".join(entry.tags) or None),
        ("started", f"{info.get('start_time', '-')} ({age_text(entry.age_s)} ago)"),
        ("ended", info.get("end_time")),
        ("error", (info.get("error") or "").strip().splitlines()[0] if info.get("error") else None),
        ("groups", " ".join(f"{k}={v}" for k, v in choices(entry.path).items())),
        ("overrides", " ".join(map(str, info.get("overrides") or read.read_overrides(entry.path)))
         or "(none)"),
        ("code", git.get("commit") and f"{git['commit'][:12]}"
         + (" with uncommitted changes" if git.get("dirty") else "")),
        ("host", info.get("host") and f"{info['host']}, process {info.get('pid', '?')}, "
         f"{info.get('device', '?')}"),
        ("resumed", f"{len(info['resumed'])} times" if info.get("resumed") else None),
    ]
    lines += [(key, info[key]) for key in ("reproduces", "evaluates") if info.get(key)]
    return [(label, value) for label, value in lines if value]


def _value(value: float | int) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}"
    return f"{value:,}"


def _files(run_dir: Path) -> list[tuple[str, str, str]]:
    """Each top-level file and folder of the run, its size, and a folder's files by name."""
    rows = []
    for path in sorted(run_dir.iterdir(), key=lambda p: p.name):
        if not path.is_dir() or path.is_symlink():
            rows.append((path.name, size_text(path.lstat().st_size), ""))
            continue
        inside = sorted(p.name for p in path.iterdir())
        names = ", ".join(inside) if len(inside) <= LISTED_FILES else f"{len(inside)} entries"
        rows.append((f"{path.name}/", size_text(disk_size(path)), names))
    return rows


def commands(entry: Entry) -> list[tuple[str, str]]:
    """The commands that go on with the run, as a shell takes them (quoted paths: a sweep job's
    folder holds `=`, `,` and brackets)."""
    path = shlex.quote(str(entry.path))
    found = []
    if entry.status in ("interrupted", "failed", STALE):
        found.append(("resume", f"python -m resnet_exp resume={path}"))
    if (entry.path / CHECKPOINT_DIR / "best.ckpt").is_file():
        found.append(("eval", f"python -m resnet_exp.eval {path}"))
    if (entry.path / CONFIG_FILE).is_file():
        found.append(("reproduce", f"python -m resnet_exp.reproduce {path}"))
    return found


def show(run_dir: Path, out: Console) -> None:
    if not run_dir.is_dir() or not read.is_run_dir(run_dir):
        raise UserError(f"{run_dir} is not a run folder (one holds run.json and .hydra/): "
                        "`python -m resnet_exp.runs list` lists them, each with its folder")
    entry = read_entry(run_dir)
    out.print(Text(str(run_dir), style="bold"), soft_wrap=True, highlight=False)
    for label, value in record_lines(entry):
        _line(out, label, value)
    scalars = {k: v for k, v in entry.metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out.print(Text("metrics" if scalars else "metrics    none: metrics.json is written when "
                   "a run finishes", style="bold"), soft_wrap=True)
    width = max(map(len, scalars), default=0)
    for key, value in scalars.items():
        out.print(Text(f"  {key:<{width}}  {_value(value)}"), soft_wrap=True, highlight=False)
    out.print(Text(f"files ({size_text(entry.size)})", style="bold"), soft_wrap=True)
    rows = _files(run_dir)
    width, size = (max((len(row[i]) for row in rows), default=0) for i in (0, 1))
    for name, what, inside in rows:
        out.print(Text(f"  {name:<{width}}  {what:>{size}}  {inside}".rstrip()), soft_wrap=True,
                  highlight=False)
    for label, line in commands(entry):
        _line(out, label, line)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("root", nargs="?", default=Path("outputs"), type=Path, metavar="ROOT",
                         help="a folder holding runs, a sweep or a run (default: outputs)")
    filters.add_argument("--status", action="append", choices=[*STATUSES, STALE],
                         help="only runs with this status, repeatable")
    filters.add_argument("--tag", action="append", dest="tags", metavar="TAG",
                         help="only runs started with this tag (tags=[...]), repeatable")
    filters.add_argument("--name", metavar="GLOB", help="only runs whose name or folder matches")
    verbs = parser.add_subparsers(dest="verb", required=True,
                                  metavar="{list,show,upgrade,clean}")
    verbs.add_parser("list", parents=[filters], help="one row per run, newest first")
    verbs.add_parser("show", help="one run: its record, metrics, files and commands").add_argument(
        "run", type=Path, metavar="RUN", help="the run folder")
    verbs.add_parser("upgrade", parents=[filters],
                     help="rewrite what older runs wrote that today's viewers misread")
    clean = verbs.add_parser("clean", parents=[filters], help="delete the selected runs")
    clean.add_argument("--failed", action="store_true", help="the failed runs (--status failed)")
    clean.add_argument("--older-than", type=_age, metavar="AGE",
                       help="runs started longer ago than AGE: 12h, 7d, 2w")
    clean.add_argument("--stale", action="store_true",
                       help="the stale runs (running, but no process holds the folder)")
    clean.add_argument("--yes", action="store_true", help="delete without asking")
    return parser


def _age(text: str) -> float:
    try:
        return age(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _selected(args: argparse.Namespace) -> list[Entry]:
    statuses = list(args.status or []) + ["failed"] * bool(getattr(args, "failed", False)) + [
        STALE] * bool(getattr(args, "stale", False))
    found = entries(args.root)
    kept = select(found, statuses, args.tags, args.name, getattr(args, "older_than", None))
    if not kept and args.verb == "list":
        ui.console.print(Text(f"none of the {counted(len(found))} under {args.root} matches"
                              if found else f"no runs under {args.root}"), soft_wrap=True)
    return kept


def upgrade(selected: list[Entry], out: Console) -> int:
    """`upgrade`: each selected run's TensorBoard events without an experiment summary."""
    from resnet_exp.loggers.tensorboard import drop_experiment_summary

    changed = 0
    for entry in selected:
        if entry.status == "running":  # listing.read_entry tried its lock: a process writes
            _line(out, "left alone", f"{entry.path} (a process writes in it)")
            continue
        rewritten = drop_experiment_summary(entry.path / TENSORBOARD_DIR)
        if rewritten:
            changed += 1
            _line(out, "rewritten", f"{entry.path} ({len(rewritten)} event files)")
    out.print(Text(f"{changed} of {counted(len(selected))} rewritten"), highlight=False)
    return 0


@command
def main(argv: list[str] | None = None, prog: str = "python -m resnet_exp.runs") -> int:
    args = _parser(prog).parse_args(argv)
    out = ui.console  # read here: a test sets the width it prints at
    if args.verb == "show":
        show(args.run, out)
        return 0
    if args.verb == "clean" and not (args.failed or args.status or args.older_than or args.stale):
        raise UserError("clean deletes what --failed, --status STATUS, --older-than AGE or "
                        "--stale selects: give at least one (--tag and --name narrow them)")
    selected = _selected(args)
    if args.verb == "upgrade":
        return upgrade(selected, out)
    if args.verb == "clean":
        from resnet_exp.runs.clean import clean

        return clean(selected, args.stale or STALE in (args.status or []), args.yes, out)
    if selected:
        print_table(selected, out)
        total = sum(e.size for e in selected)
        out.print(Text(f"{counted(len(selected))} under {args.root}, {size_text(total)}"),
                  soft_wrap=True, highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
