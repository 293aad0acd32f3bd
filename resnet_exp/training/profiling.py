"""What the trainer's `profiler` is: nothing at all unless asked (`NoProfiler`, conf/trainer/
default.yaml), and with `debug=profiler` Lightning's simple profiler, its report both printed and
saved.

Lightning's profilers print their report only when they have no file to write, and write it
only there when they do: a user who asked for a profile should not have to go looking."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from pytorch_lightning.profilers import PassThroughProfiler, SimpleProfiler

_NOTHING = nullcontext()


class NoProfiler(PassThroughProfiler):
    """Lightning's default, which records nothing, minus the cost of recording nothing: that one
    still builds a context manager (a generator) around every hook Lightning calls, dozens a
    training step (docs/speed.md#per-step counts and times them). One shared, empty one here."""

    def profile(self, action_name: str) -> AbstractContextManager:
        return _NOTHING


class PrintedSimpleProfiler(SimpleProfiler):
    """Seconds per hook and step, for each stage (fit, then each test): printed at the stage's
    end and written to <dirpath>/<stage>-<filename>.txt."""

    def describe(self) -> None:
        report = self.summary()
        super().describe()  # writes the file
        if report and self._local_rank in (None, 0):
            from resnet_exp.core.console import console

            console.print(report, markup=False, highlight=False)
