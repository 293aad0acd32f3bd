"""Continuing an interrupted run in its own folder, from its last.ckpt.

    python -m resnet_exp resume=RUN_DIR [key=value ...] [--trust]
        the run's overrides (replay.py), with RUN_DIR as Hydra's run folder; its .hydra/ is kept
        as written.
    python -m resnet_exp -m hydra.sweep.dir=SWEEP_DIR resume=true [sweep overrides]
        every job continues in the folder Hydra picks for it: finished jobs are skipped (their
        metrics are the objective), interrupted ones resume from last.ckpt, others start.

What makes the resumed run equal to an uninterrupted one is described in training/seeding.py.
Imports no torch: `__main__` calls `command_line` before Hydra starts.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from resnet_exp.core import config
from resnet_exp.core.config import quote, unquote
from resnet_exp.core.errors import UserError
from resnet_exp.runs import CHECKPOINT_DIR, METRICS_FILE, RUN_FILE, read, record
from resnet_exp.runs.replay import ONE_JOB, replay

RESUME_PREFIXES = ("resume=", "+resume=", "++resume=")


def _resume_value(args: list[str]) -> tuple[list[str], str | None]:
    """(the `resume=` arguments, the last one's value). The value is read as typed, not by Hydra's
    parser: a sweep job's folder name holds `=` and `,` (`3_lr=0.1,seed=1`)."""
    given = [a for a in args if a.startswith(RESUME_PREFIXES)]
    if not given:
        return [], None
    return given, unquote(given[-1].split("=", 1)[1])


def check_parsable(args: list[str]) -> None:
    """Every override Hydra's parser would reject is one line here, before Hydra starts (it
    would end in a traceback from deep inside its parser)."""
    from hydra.errors import HydraException

    for arg in args:
        if arg.startswith("-") or "=" not in arg or arg.startswith(RESUME_PREFIXES):
            continue
        try:
            config.parse_override(arg)
        except HydraException as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            hint = "" if "while evaluating" in first else (
                "; quote a value that holds other characters than letters, digits and -_./:, "
                f"e.g. {arg.split('=', 1)[0]}='...'")
            raise UserError(f"{arg}: Hydra cannot read this override ({first}){hint}") from None


def command_line(argv: list[str]) -> list[str]:
    """The Hydra command line for `resume=RUN_DIR`: the run's own overrides, then the extra
    ones given, with RUN_DIR as the run folder and its .hydra/ left as the run wrote it
    (`hydra.output_subdir=null`), as one job even where the run was a sweep's job
    (`replay.ONE_JOB`). Other command lines are returned unchanged."""
    args = argv[1:]
    if os.environ.get("LOCAL_RANK", "0") != "0" and ONE_JOB in args:
        # Lightning's DDP re-runs rank 0's command line for the other local ranks: the one
        # made here, already checked (with --trust, which is not in it, where it was given)
        return argv
    allow = "--trust" in args
    args = [a for a in args if a != "--trust"]
    check_parsable(args)
    given, value = _resume_value(args)
    if value is None or value.lower() in ("", "true", "false", "null", "none"):
        if allow:
            raise UserError("--trust applies to resume=RUN_DIR only")
        return argv
    if "-m" in args or "--multirun" in args:
        raise UserError(
            "resume=RUN_DIR continues one run; to resume a sweep, rerun its command with "
            "hydra.sweep.dir=<its folder> resume=true"
        )
    run_dir = Path(value).expanduser().resolve()
    if run_dir.is_dir():
        check_no_links_out(run_dir)
    extra = [a for a in args if a not in given]
    overrides, _ = replay(run_dir, extra, allow)
    return [argv[0], *overrides, f"resume={quote(run_dir)}",
            f"hydra.run.dir={quote(run_dir)}", "hydra.output_subdir=null", ONE_JOB]


def check_no_links_out(run_dir: Path) -> None:
    """A symbolic link inside a run folder that leads out of it is refused: a resumed run
    deletes stale checkpoints and writes its own through whatever the folder holds."""
    inside = run_dir.resolve()
    for path in [run_dir, *run_dir.rglob("*")]:  # rglob does not follow links to folders
        target = path.resolve()
        if path.is_symlink() and target != inside and inside not in target.parents:
            raise UserError(f"{path} is a link to {target}, outside the run folder: a resumed run "
                            "would delete and write files there. Replace the link with a copy "
                            "of what it points to, then resume")


def prepare(run_dir: Path) -> Path | None:
    """Make a run folder ready to continue; returns last.ckpt, or None to start from scratch.

    Temporary files of a write that was killed are removed; without last.ckpt, a best.ckpt
    left by an attempt killed between its two writes is removed too, so that ModelCheckpoint
    does not save the new run's best as best-v1.ckpt beside it. Refused when a link in the
    folder leads out of it: nothing is deleted or written through it.
    """
    check_no_links_out(Path(run_dir))
    folder = Path(run_dir) / CHECKPOINT_DIR
    for stale in folder.glob(".*.tmp") if folder.is_dir() else []:
        stale.unlink(missing_ok=True)
    last = read.last_checkpoint(run_dir)
    if last is None:
        for stale in folder.glob("*.ckpt") if folder.is_dir() else []:
            stale.unlink()
    info = read.read_json(Path(run_dir) / RUN_FILE) if read.run_status(run_dir) else {}
    resumed = list(info.get("resumed", []))
    if info:
        resumed.append({"time": datetime.now().astimezone().isoformat(timespec="seconds"),
                        "from": str(last) if last else None, "status": info.get("status")})
        record.note(run_dir, resumed=resumed)
    return last


def finished(run_dir: Path) -> dict:
    """The metrics of a run that has finished already (or was pruned by an Optuna search: its
    trial is over); nothing in its folder is rewritten."""
    from resnet_exp.core import console

    metrics = read.read_json(Path(run_dir) / METRICS_FILE)
    console.console.print(f"[bold]{console.literal(run_dir)}[/bold] finished already: not run "
                          "again")
    return metrics

