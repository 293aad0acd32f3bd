"""What W&B wrote for an offline run, read back: its transaction log `run-<id>.wandb`, the file
`wandb sync` uploads. Its records are wandb's own protobuf messages (wandb_internal_pb2.Record)
in LevelDB's log format behind a 7-byte W&B header; wandb 0.31 ships no Python reader (its Go
core writes and reads the file), so the framing is read here and the records by wandb's classes.
An offline run writes no wandb-summary.json or config.yaml: the log is all there is.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

HEADER = b":W&B"  # then a 2-byte magic and a version byte
BLOCK = 32 * 1024  # LevelDB log blocks; a record's 7-byte header never straddles two
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """One offline run's record: its id, name, project, tags, config and summary as W&B
    would show them after `wandb sync`, and how it exited (None: it never said)."""

    run_id: str = ""
    name: str = ""
    project: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    exit_code: int | None = None


def records(path: Path):
    """The Record messages of a .wandb file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data.startswith(HEADER), f"{path} is not a W&B transaction log"
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # the block's zero-filled tail
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        body, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:  # padding
            continue
        parts = body if kind in (FULL, FIRST) else parts + body
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            yield record


def _items(update) -> dict:
    # a nested value (an image: its path, type, size...) as one key per leaf, joined by /
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for item in update}


def read_run(folder: Path) -> OfflineRun:
    """The offline run in `folder` (<run>/wandb/offline-run-<time>-<id>)."""
    (log,) = folder.glob("*.wandb")
    run = OfflineRun()
    for record in records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.name = record.run.run_id, record.run.display_name
            run.project, run.tags = record.run.project, list(record.run.tags)
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
        elif kind == "history":
            run.history.append(_items(record.history.item))
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def offline_runs(run_dir: Path) -> list[Path]:
    """The offline W&B runs a run folder holds, oldest first (a resumed run: one per part)."""
    return sorted((run_dir / "wandb").glob("offline-run-*"))
