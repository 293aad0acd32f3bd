"""The run folder: its layout, written once here, and the only code that knows it.

    <run>/.hydra/config.yaml      the composed config as Hydra saved it: interpolations such as
                                  ${hydra:runtime.choices.model} are kept as text, not resolved
    <run>/.hydra/overrides.yaml   the command-line overrides; hydra.yaml: Hydra's node (choices)
    <run>/run.json                status (running/finished/pruned/failed/interrupted), times, origin
    <run>/metrics.json            final metrics; written only when the run finished
    <run>/checkpoints/best.ckpt   best by the monitored metric; last.ckpt
    <run>/tensorboard/            event files (scalars, images, hparams)
    <run>/gradient_flow.csv       per-epoch gradient statistics per layer (callbacks/gradflow.py)
    <run>/figures/                PNGs: gradient flow, confusion matrix, predictions, augmentation
    <run>/eval/<date>_<time>/     one folder per `python -m resnet_exp.eval` of this run
    <run>/analysis/<name>.json    `python -m resnet_exp.analyze`: lesion, landscape, sharpness,
                                  cka; each with a "summary" the report reads as analysis/*

Runs live in outputs/runs/, sweeps in outputs/multirun/, debug=* runs in outputs/debug/ (which a
report of outputs/ leaves out).

A run is finished exactly when run.json says so; metrics.json is written before that status, so
a crash between the two leaves a run that still says "running" rather than a finished-looking one.

The modules: record.py writes run.json and metrics.json; read.py finds and reads run folders;
replay.py composes a saved run's config again (trust.py: which code it may name); resume.py
continues a run in its own folder; compare.py groups runs into configurations for reports and
sweep tables; hydra_hooks.py holds the Hydra callbacks (output-folder check, sweep summary).
"""

from pathlib import Path

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
CONFIG_FILE = Path(".hydra") / "config.yaml"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
HYDRA_FILE = Path(".hydra") / "hydra.yaml"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
CSV_METRICS_FILE = Path("csv") / "metrics.csv"
GRADIENT_FLOW_FILE = "gradient_flow.csv"
GRADIENT_FLOW_COLUMNS = ("epoch", "index", "layer", "mean_abs_grad", "grad_l2_norm", "steps")
FIGURES_DIR = "figures"
SWEEP_FILE = "multirun.yaml"  # Hydra writes it at the top of a sweep folder
PRUNED = "pruned"  # a job of an Optuna search that its pruner stopped: it ended, tested
ENDED = ("finished", PRUNED)  # what a resume leaves as it is
STATUSES = ("running", *ENDED, "failed", "interrupted")
# Top-level keys that restart, print, pace or analyse a run, not what it trains: no grouping key
# of the report (compare.py), no HPARAMS column (hparams.py)
NOT_TRAINING = ("resume", "extras", "cpu_threads", "analysis")
ANALYSIS_DIR = "analysis"
DEBUG_DIR = "debug"  # outputs/debug/: the debug=* runs (conf/_base_debug.yaml), kept apart
