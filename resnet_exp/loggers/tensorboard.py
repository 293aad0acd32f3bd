"""TensorBoard (`logger=tensorboard`): the run's curves and figures, and a row of the HPARAMS tab.

HPARAMS compares what is served (`make tensorboard`: every run and sweep), so a run writes its
session alone (its settings, its end) and no experiment summary. Given summaries, TensorBoard
takes the first run's that it finds for everything it serves (the hparams plugin's
backend_context.py, `_find_experiment_tag`): that run's columns, its `differs` marks, the other
runs' keys missing. Given none, it merges the sessions of every served run, marks a setting as
differing where their values differ (`_compute_hparam_info_from_values`) and lists those first
(`_sort_and_reduce_to_hparams_limit`): a sweep's swept keys, whichever runs are served beside
it. Its metric columns are then every scalar of the runs and of the folders below them, in name
order (`_compute_metric_names`): gradient flow's per-layer scalars live beside tensorboard/.

The table names a row by the session's group name (list_session_groups.py, `_add_session`): the
run as a user finds its folder, `<sweep>/<job>` or the run folder's name, not TensorBoard's run
path, which ends in /tensorboard. Rows of one group name would be merged into one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

from resnet_exp.runs.context import RunContext
from resnet_exp.runs.extension import Extension, Resumed, RunEnd


class TensorBoard(TensorBoardLogger, Extension):
    """Lightning's TensorBoardLogger that continues an interrupted run and fills HPARAMS."""

    @classmethod
    def resume_arguments(cls, resumed: Resumed) -> dict:
        # SummaryWriter(purge_step) marks every event at or after that step in the folder's
        # older files as superseded: the curves show the resumed run once
        return {"purge_step": resumed.step}

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        # Lightning adds `epoch` to whatever a module logs (LoggerConnector.log_metrics; no
        # option turns it off): as a curve it is a group of its own, one of the two the Time
        # Series page opens. The x axis is the step; with logger=csv, csv/metrics.csv has it.
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)

    def finish(self, end: RunEnd) -> None:
        self.log_metrics(end.final, step=end.trainer.global_step)
        write_session(self, end.settings, trial_name(end.context))
        self.save()


def trial_name(context: RunContext) -> str:
    """The HPARAMS row's name: `<sweep folder>/<job folder>` for a sweep's job, else the run
    folder's name (`<date>_<time>_<name>`)."""
    if context.run_dir is None:
        return ""
    if context.multirun and context.sweep_dir is not None:
        return f"{context.sweep_dir.name}/{context.run_dir.name}"
    return context.run_dir.name


@rank_zero_only  # as the logger's own log_hyperparams: other ranks' experiment is a dummy
def write_session(logger: TensorBoardLogger, params: dict, name: str) -> None:
    """The HPARAMS session of a TensorBoardLogger's run: its settings, under the row name `name`,
    and its end; no experiment summary (the module docstring says why)."""
    from tensorboard.plugins.hparams import plugin_data_pb2
    from torch.utils.tensorboard.summary import hparams

    logger.log_hyperparams(params)  # hparams.yaml (no metrics: Lightning writes no summary)
    # torch's values, booleans as numbers, as every earlier run wrote them: a column mixing
    # 1.0 and true would read as differing
    _, start, end = hparams(params, {})
    value = start.value[0]
    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    data.session_start_info.group_name = name
    value.metadata.plugin_data.content = data.SerializeToString()
    writer = logger.experiment._get_file_writer()
    for summary in (start, end):
        writer.add_summary(summary)


def drop_experiment_summary(event_dir: Path) -> list[Path]:
    """Rewrite the event files in `event_dir` without an HPARAMS experiment summary, each
    replaced whole (runs/atomic.py); the files rewritten. Nothing else in them changes."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.summary.writer.record_writer import RecordWriter

    from resnet_exp.runs.atomic import atomic_write

    def write(f, records: list[bytes]) -> None:
        writer = RecordWriter(f)
        for record in records:
            writer.write(record)

    changed = []
    for path in sorted(Path(event_dir).glob("events.out.tfevents.*")):
        kept = _without_experiment(RawEventFileLoader(str(path)).Load())
        if kept is not None:
            atomic_write(path, lambda f, kept=kept: write(f, kept), binary=True)
            changed.append(path)
    return changed


def _without_experiment(records: Iterable[bytes]) -> list[bytes] | None:
    """The records with every experiment summary value left out; None when there was none."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.plugins.hparams.metadata import EXPERIMENT_TAG

    kept, dropped = [], False
    for record in records:
        event = Event.FromString(record)
        values = [v for v in event.summary.value if v.tag != EXPERIMENT_TAG]
        if len(values) == len(event.summary.value):
            kept.append(record)
            continue
        dropped = True
        if values:  # other values of the same event stay
            del event.summary.value[:]
            event.summary.value.extend(values)
            kept.append(event.SerializeToString())
    return kept if dropped else None
