"""Per-class results of the test, as Khalaf's ResNet-56 on CIFAR-10 reports them
(docs/studies.md#sources): confusion matrix, precision, recall, F1, and a grid of sample
predictions.

Computed once per run, at the test of the best checkpoint (`Classifier.test_prefix == "test"`):
train.py tests the last checkpoint too, as "test_last", and this callback sits that one out.
It reads the logits `Classifier.test_step` returns, so nothing is computed twice.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from rich.table import Table
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from resnet_exp.callbacks.outputs import save_figure
from resnet_exp.core import figures
from resnet_exp.core.console import literal
from resnet_exp.runs.extension import Extension, RunStart

KEY = "per_class"  # metrics.json: {"<prefix>/per_class": {"<class>": {"precision": ...}}}
TABLE_ROWS = 20  # more classes than this: the console shows the worst ones, metrics.json all


class PerClassMetrics(pl.Callback, Extension):
    """Confusion matrix (`<run>/figures/confusion_matrix.png`, TensorBoard `test/confusion_matrix`),
    per-class precision/recall/F1/support (its `results()`, for metrics.json, and a rich
    table), and the first `num_samples` test images with true / predicted labels
    (`figures/test_predictions.png`, TensorBoard `test/predictions`).

    output_dir: the run folder (`${hydra:runtime.output_dir}`); None: the trainer's root dir.
    prefix: the test whose results these are (train.py's best-checkpoint test is "test").
    """

    def __init__(self, output_dir: str | None = None, num_samples: int = 24,
                 prefix: str = "test") -> None:
        self.output_dir = output_dir
        self.num_samples = num_samples
        self.prefix = prefix
        self.run_metrics: dict = {}
        self.print_table = True
        self._active = False

    def start(self, run: RunStart) -> None:
        # a sweep's jobs leave their table to the sweep's summary: one per job buried it
        self.print_table = not run.context.multirun

    def results(self) -> dict:
        return self.run_metrics

    def on_test_start(self, trainer, pl_module) -> None:
        self._active = getattr(pl_module, "test_prefix", "test") == self.prefix
        self._metrics = None
        self._samples = None

    def _create(self, num_classes: int, device: torch.device) -> None:
        # precision/recall/F1 share one set of per-class counts (MetricCollection compute groups)
        self._metrics = MetricCollection({
            "precision": MulticlassPrecision(num_classes, average=None),
            "recall": MulticlassRecall(num_classes, average=None),
            "f1": MulticlassF1Score(num_classes, average=None),
            "confusion": MulticlassConfusionMatrix(num_classes),
        }).to(device)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                          dataloader_idx=0) -> None:
        if not self._active:
            return
        if not isinstance(outputs, dict) or "logits" not in outputs:
            rank_zero_warn("PerClassMetrics needs test_step to return {'logits': ...}; "
                           "per-class results are skipped")
            self._active = False
            return
        logits, (x, y) = outputs["logits"], batch
        if self._metrics is None:
            self._create(logits.shape[1], logits.device)
        preds = logits.argmax(1)
        self._metrics.update(preds, y)
        if self._samples is None:  # the first batch: one host copy, no per-batch sync
            k = self.num_samples
            self._samples = (x[:k].cpu(), y[:k].cpu(), preds[:k].cpu())

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if not self._active or self._metrics is None:
            return
        values = {name: v.cpu() for name, v in self._metrics.compute().items()}  # syncs DDP
        self._metrics.reset()
        if not trainer.is_global_zero:
            return
        confusion = values.pop("confusion")
        support = confusion.sum(1)
        classes = self._class_names(trainer.datamodule, len(support))
        self.run_metrics = {f"{self.prefix}/{KEY}": {
            name: {**{m: float(v[i]) for m, v in values.items()}, "support": int(support[i])}
            for i, name in enumerate(classes)
        }}
        self._draw(trainer, confusion.numpy(), classes)
        self._table = self._make_table(classes)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        # printed here, once the progress bar (torn down before) no longer redraws the console
        if getattr(self, "_table", None) is not None and self.print_table:
            from resnet_exp.core.console import console

            console.print(self._table)
            self._table = None

    @staticmethod
    def _class_names(datamodule, n: int) -> list[str]:
        names = [str(c) for c in getattr(datamodule, "classes", None) or []]
        return names if len(names) == n else [str(i) for i in range(n)]

    def _draw(self, trainer, confusion, classes) -> None:
        accuracy = confusion.trace() / max(confusion.sum(), 1)
        save_figure(trainer, self.output_dir, figures.confusion_matrix(
            confusion, classes, f"Confusion matrix ({self.prefix}, accuracy {accuracy:.4f})"),
            "confusion_matrix", f"{self.prefix}/confusion_matrix")
        x, y, pred = self._samples
        wrong = int((y != pred).sum())
        images = figures.displayable(x, *figures.image_stats(trainer.datamodule))
        save_figure(trainer, self.output_dir, figures.predictions(
            images, y.tolist(), pred.tolist(), classes,
            f"First {len(y)} {self.prefix} images: true / predicted ({wrong} wrong, in red)"),
            "test_predictions", f"{self.prefix}/predictions")

    def _make_table(self, classes: list[str]) -> Table:
        rows = self.run_metrics[f"{self.prefix}/{KEY}"]
        shown = classes
        title = f"{self.prefix}: per class"
        if len(classes) > TABLE_ROWS:
            shown = sorted(classes, key=lambda c: rows[c]["f1"])[:10]
            title += f" (the 10 lowest F1 of {len(classes)}; all in metrics.json)"
        table = Table(title=title, header_style="bold")
        for column in ("class", "precision", "recall", "f1", "support"):
            table.add_column(column, justify="left" if column == "class" else "right")
        for name in shown:
            r = rows[name]
            table.add_row(literal(name), f"{r['precision']:.4f}", f"{r['recall']:.4f}",
                          f"{r['f1']:.4f}", str(r["support"]))
        return table
