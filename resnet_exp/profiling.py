"""`debug=profiler`: Lightning's simple profiler, its report both printed and saved.

Lightning's profilers print their report only when they have no file to write, and write it
only there when they do: a user who asked for a profile should not have to go looking."""

from __future__ import annotations

from pytorch_lightning.profilers import SimpleProfiler


class PrintedSimpleProfiler(SimpleProfiler):
    """Seconds per hook and step, for each stage (fit, then each test): printed at the stage's
    end and written to <dirpath>/<stage>-<filename>.txt."""

    def describe(self) -> None:
        report = self.summary()
        super().describe()  # writes the file
        if report and self._local_rank in (None, 0):
            from resnet_exp.console import console

            console.print(report, markup=False, highlight=False)
