"""The output folder must take files before a run starts.

A Hydra callback (conf/hydra/default.yaml, `hydra.callbacks.check_output`): before the first job,
Hydra's run (or sweep) folder is created and a file written and removed in it. A folder that
cannot be written (read-only, under a file, no space left) stops the command with one line naming
the folder and the fix, instead of Hydra's traceback from deep inside its job runner or, worse, a
run that trains and then cannot save.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def check_writable(folder: Path, key: str) -> str | None:
    """None when `folder` can be created and written, else the message saying why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        reason = "no space left on the device" if e.errno == errno.ENOSPC else e.strerror or e
        return (f"cannot write to the output folder {folder} ({reason}): choose a writable one "
                f"with {key}=...")
    return None


class CheckOutput(Callback):
    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(Path(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(Path(config.hydra.sweep.dir), "hydra.sweep.dir")

    @staticmethod
    def _check(folder: Path, key: str) -> None:
        problem = check_writable(folder, key)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            # SystemExit passes through Hydra's callback runner, which turns exceptions into
            # warnings; status 2 as for every error the user can fix (errors.UserError)
            sys.exit(2)
