"""Gradient flow through the weight layers, as Gitari's ResNet course report and Arenas López's
VGG study (docs/studies.md#sources) plot it: where gradients vanish.

`GradientFlow` records, for every conv and linear weight in depth order, the mean absolute gradient
(the y axis of Arenas López's plots) and the L2 norm of the gradient:

- every optimizer step, on the device: two fused norms over all weights (`torch._foreach_norm`,
  what `torch.nn.utils.clip_grad_norm_` runs), summed into an epoch total, with no host sync;
- every `every_n_steps` steps, that step's values to TensorBoard, tags
  `gradient_flow/mean_abs/<index>_<layer>` and `gradient_flow/l2_norm/<index>_<layer>`;
- every epoch, the epoch's averages to `<run>/gradient_flow.csv` (one row per epoch and layer);
- in metrics.json, `gradient_flow/first_to_last`: the last epoch's mean |gradient| of the first
  weight layer over the last one's (far below 1 where gradients vanish on their way down), which
  the report compares across runs;
- at the end of training, Arenas López's plot (x layers, y average |gradient|, log scale, one
  line per epoch, a dotted line where each stage and the head begin, as the model declares them:
  `structure()`, resnet_exp/models/structure.py) as `<run>/figures/gradient_flow.png` and
  TensorBoard image `gradient_flow`.

The per-step scalars go to their own event file, `<run>/gradient_flow/` (a run of its own in
TensorBoard's list, outside the run's tensorboard/, where they would be metric columns of its
HPARAMS row, sorted before the results): per layer and step they outnumber everything else a run
logs about 100 to 1 (ResNet-110, 164 CIFAR epochs, every 50 steps: 280k of 283k events, 17 MB),
and kept apart they cost nothing to readers of the run's curves (the report, TensorBoard's first
load): reading that run's curves takes about 7 s with them in the same file against 0.06 s
without (docs/speed.md, "Gradient flow": the command, the machine and each reading).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn

from resnet_exp.callbacks.outputs import save_figure, tensorboard
from resnet_exp.core import figures
from resnet_exp.models.structure import structure_of
from resnet_exp.runs import GRADIENT_FLOW_COLUMNS, GRADIENT_FLOW_EVENTS_DIR, GRADIENT_FLOW_FILE
from resnet_exp.runs.atomic import atomic_write
from resnet_exp.runs.extension import Extension
from resnet_exp.runs.read import read_gradient_flow


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Trainable conv and linear weights with their module names, in registration order, which
    is depth order for every model in resnet_exp.models (stem, stages, classifier)."""
    return [
        (name, module.weight)
        for name, module in model.named_modules()
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) and module.weight.requires_grad
    ]


def unit_starts(model: nn.Module, names: list[str]) -> list[int]:
    """The indices in `names` (weight layers, depth order) where a stage or the head that the
    model declares begins; none for a model that declares no parts."""
    declared = structure_of(model)
    owners = [declared.unit_of(name) for name in names]
    return [i for i in range(1, len(names)) if owners[i] != owners[i - 1]]


class GradientFlow(pl.Callback, Extension):
    """See the module docstring. `output_dir` is the run folder (`${hydra:runtime.output_dir}`);
    without one, the trainer's `default_root_dir`."""

    def __init__(self, every_n_steps: int = 50, output_dir: str | None = None) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.output_dir = output_dir
        self.names: list[str] = []
        self.unit_starts: list[int] = []  # of the model's declared stages and head, in names
        # epoch -> (average |gradient| per layer, average L2 norm per layer, optimizer steps)
        self.history: dict[int, tuple[list[float], list[float], int]] = {}
        self._weights: list[nn.Parameter] = []
        self._writer = None
        self._root = "."  # the trainer's default_root_dir, set at fit start
        self._epoch = 0  # of the sums below
        self._resumed: dict | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir or self._root)

    @property
    def path(self) -> Path:
        return self.run_dir / GRADIENT_FLOW_FILE

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:  # gradients are all-reduced: rank 0 has them all
            return
        self._root = trainer.default_root_dir
        model = getattr(pl_module, "model", pl_module)
        layers = weight_layers(model)
        self.names = [name for name, _ in layers]
        self.unit_starts = unit_starts(model, self.names)
        self._weights = [w for _, w in layers]
        device = pl_module.device
        self._numel = torch.tensor([w.numel() for w in self._weights], device=device,
                                   dtype=torch.float32)
        self._zero = torch.zeros((), device=device)
        self._reset()
        if self._resumed and "history" in self._resumed:  # the epochs done, exactly as computed
            self.history = {int(e): (list(a), list(n), int(k))
                            for e, (a, n, k) in self._resumed["history"].items()}
        elif self.path.exists():  # a checkpoint from before it carried them: the CSV's
            _, done = read_gradient_flow(self.path)
            self.history = {e: (v, [float("nan")] * len(v), 0) for e, v in done.items()}
        logger = tensorboard(trainer)
        if logger is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / GRADIENT_FLOW_EVENTS_DIR))
        self._tags = [
            [f"gradient_flow/{kind}/{i:03d}_{name}" for i, name in enumerate(self.names)]
            for kind in ("mean_abs", "l2_norm")
        ]

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning restores a resumed run's epoch after on_fit_start, and calls this only when
        # epochs are left to train (a run resumed after its last one keeps its history whole)
        resumed, self._resumed = self._resumed, None
        if not self._weights:
            return
        self.history = {e: h for e, h in self.history.items() if e < trainer.current_epoch}
        if resumed and resumed["epoch"] == trainer.current_epoch and resumed["steps"]:
            # a checkpoint written mid-epoch (on SIGTERM): the epoch's sums so far
            self._sum, self._steps = resumed["sum"].to(self._sum.device), int(resumed["steps"])

    def state_dict(self) -> dict:
        if not self._weights:
            return {}
        return {"epoch": self._epoch, "sum": self._sum, "steps": self._steps,
                "history": dict(self.history)}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resumed = state_dict or None

    def _reset(self) -> None:
        self._sum = torch.zeros(2, len(self._weights), device=self._numel.device)
        self._steps = 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self._weights:
            return
        # Lightning calls this once the gradients of the step are final (accumulated, unscaled)
        self._epoch = trainer.current_epoch
        grads = [w.grad if w.grad is not None else self._zero for w in self._weights]
        with torch.no_grad():
            l1 = torch.stack(torch._foreach_norm(grads, 1)).float()
            l2 = torch.stack(torch._foreach_norm(grads, 2)).float()
            stats = torch.stack([l1 / self._numel, l2])
            self._sum += stats
        self._steps += 1
        if self._writer is not None and trainer.global_step % self.every_n_steps == 0:
            values = stats.cpu().tolist()  # the one host sync, every_n_steps apart
            for tags, row in zip(self._tags, values, strict=True):
                for tag, value in zip(tags, row, strict=True):
                    self._writer.add_scalar(tag, value, trainer.global_step)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._weights or self._steps == 0:
            return
        mean_abs, l2 = (self._sum / self._steps).cpu().tolist()
        self.history[trainer.current_epoch] = (mean_abs, l2, self._steps)
        self._reset()
        self._write_csv()

    def results(self) -> dict:
        if not self.history:
            return {}
        mean_abs = self.history[max(self.history)][0]
        return {"gradient_flow/first_to_last": mean_abs[0] / mean_abs[-1] if mean_abs[-1] else
                float("inf")}

    def _write_csv(self) -> None:
        def rows(f) -> None:
            writer = csv.writer(f)
            writer.writerow(GRADIENT_FLOW_COLUMNS)
            for epoch, (mean_abs, l2, steps) in sorted(self.history.items()):
                for i, name in enumerate(self.names):
                    writer.writerow((epoch, i, name, f"{mean_abs[i]:.6e}", f"{l2[i]:.6e}", steps))

        atomic_write(self.path, rows)

    def on_train_end(self, trainer, pl_module) -> None:
        if not self.history:
            return
        fig = figures.gradient_flow(
            self.names, {epoch: h[0] for epoch, h in self.history.items()},
            title=f"Gradient flow: {type(getattr(pl_module, 'model', pl_module)).__name__}, "
                  f"{len(self.names)} weight layers",
        )
        for start in self.unit_starts:  # between a part's last layer and the next one's first
            fig.axes[0].axvline(start - 0.5, color="gray", linestyle=":", linewidth=0.8)
        save_figure(trainer, self.run_dir, fig, "gradient_flow", "gradient_flow")
        self._close()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._close()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._close()
