"""The callbacks a run uses. conf/callbacks/*.yaml names each by its canonical path
(`resnet_exp.callbacks.<module>.<Class>`): a saved config may name nothing else (runs/trust.py).

    checkpoint.py  ModelCheckpoint: best.ckpt, last.ckpt, and a checkpoint on SIGTERM
    guards.py      StopOnNonFinite; exit_on_sigterm (a scheduler's SIGTERM as an interruption)
    throughput.py  EpochThroughput: seconds per epoch and images per second
    gradflow.py    GradientFlow: gradient statistics per layer (Gitari's and Arenas López's plots)
    perclass.py    PerClassMetrics: confusion matrix, per-class precision/recall/F1
    samples.py     AugmentedSamples: training images beside augmentations of them
    outputs.py     where they write: the TensorBoard logger, the figures folder
    display.py     progress_bar, model_summary: Rich's on a terminal, plain text elsewhere
                   (EpochLines: a line per epoch)
    step_logging.py  StepLogInterval: step metrics at most once per epoch on short epochs
    early_stopping.py  early_stopping: Lightning's EarlyStopping when a patience is given (not
                   re-exported: the name would hide the module from Hydra's locator)
    pruning.py     OptunaPruning: a search's job reports to its Optuna trial and stops when pruned

EpochSeed lives in resnet_exp/training/seeding.py with the rest of what makes a resumed epoch exact.
"""

from resnet_exp.callbacks.checkpoint import ModelCheckpoint
from resnet_exp.callbacks.display import EpochLines, model_summary, progress_bar
from resnet_exp.callbacks.gradflow import GradientFlow
from resnet_exp.callbacks.guards import StopOnNonFinite
from resnet_exp.callbacks.perclass import PerClassMetrics
from resnet_exp.callbacks.samples import AugmentedSamples
from resnet_exp.callbacks.step_logging import StepLogInterval
from resnet_exp.callbacks.throughput import EpochThroughput
from resnet_exp.training.seeding import EpochSeed

__all__ = ["AugmentedSamples", "EpochLines", "EpochSeed", "EpochThroughput", "GradientFlow",
           "ModelCheckpoint", "PerClassMetrics", "StepLogInterval", "StopOnNonFinite",
           "model_summary", "progress_bar"]
