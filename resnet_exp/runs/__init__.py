"""The run folder: its layout, written once here, and the only code that knows it.

    <run>/.hydra/config.yaml      the composed config as Hydra saved it: interpolations such as
                                  ${hydra:runtime.choices.model} are kept as text, not resolved
    <run>/.hydra/overrides.yaml   the command-line overrides; hydra.yaml: Hydra's node (choices)
    <run>/run.json                layout (`LAYOUT`); status (running, finished, pruned: an Optuna
                                  search stopped it after its test, failed, interrupted); start
                                  and end time, error, git commit and dirty flag, package
                                  versions, device and CPU threads (cpu_threads,
                                  cpu_threads_from), seed, command line, name, tags, overrides,
                                  world_size, effective_batch_size; resumed, reproduces,
                                  evaluates, mlflow_run_id where they apply
    <run>/metrics.json            final metrics, written only when the run finished: test/* (the
                                  best checkpoint), test_last/* (the last), best_epoch, epochs,
                                  parameter counts, time/*; test/per_class with callbacks=default
    <run>/checkpoints/best.ckpt   best by the monitored metric; last.ckpt: the last epoch's, or
                                  the batch a SIGTERM stopped at (Lightning checkpoints)
    <run>/tensorboard/            scalars per epoch (loss, accuracy, top-5, learning rate, epoch
                                  time, images/s), the figures (the analyses' as why/<name>; in
                                  analysis/ before), an HPARAMS session (settings, no experiment
                                  summary: loggers/tensorboard.py)
    <run>/gradient_flow/          callbacks=study's per-layer gradient scalars, a TensorBoard run
                                  kept apart (in tensorboard/gradient_flow/ before: there they
                                  were HPARAMS metric columns of the run, sorted first)
    <run>/csv/metrics.csv         the scalars again, with logger=csv
    <run>/gradient_flow.csv       callbacks=study: per epoch and layer, GRADIENT_FLOW_COLUMNS
    <run>/figures/                PNGs: gradient flow, confusion matrix, predictions, augmentation
    <run>/eval/<date>_<time>[_<data>]/   one folder per `python -m resnet_exp.eval` of this run,
                                  itself laid out as a run (run.json says what it evaluates)
    <run>/analysis/<name>.json    `python -m resnet_exp.analyze`: lesion, landscape, sharpness,
                                  cka; each with a "summary" the report reads as analysis/*
    <run>/export/model.onnx, model.pt   `python -m resnet_exp.export`: the best network with its
                                  preprocessing, for use without this package

Runs live in outputs/runs/, sweeps in outputs/multirun/, debug=* runs in outputs/debug/ (which a
report of outputs/ leaves out).

A run is finished exactly when run.json says so; metrics.json is written before that status, so
a crash between the two leaves a run that still says "running" rather than a finished-looking one.

run.json's `layout` numbers this description. A change that would make older code misread a
folder raises it; migrate.py reads the folders of older layouts (a run.json without `layout` is
layout 1) and refuses those of newer ones, naming the resnet-exp that wrote them.

The modules: record.py writes run.json and metrics.json; read.py finds and reads run folders;
replay.py composes a saved run's config again (trust.py: which code it may name); load.py gives a
trained run back, built and with its checkpoint's weights (eval, analyze, the Python API);
resume.py continues a run in its own folder; compare.py groups runs into configurations for
reports and sweep tables; hydra_hooks.py holds the Hydra callbacks (output-folder check, sweep
summary); migrate.py holds every rule for older layouts. `python -m resnet_exp.runs`
(__main__.py) lists, shows and deletes runs: listing.py reads and tables them, clean.py deletes.
"""

from pathlib import Path

LAYOUT = 3  # run.json's "layout": the version of the description above
RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
CONFIG_FILE = Path(".hydra") / "config.yaml"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
HYDRA_FILE = Path(".hydra") / "hydra.yaml"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
CSV_METRICS_FILE = Path("csv") / "metrics.csv"
GRADIENT_FLOW_FILE = "gradient_flow.csv"
GRADIENT_FLOW_EVENTS_DIR = "gradient_flow"
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
EXPORT_DIR = "export"
DEBUG_DIR = "debug"  # outputs/debug/: the debug=* runs (conf/_base_debug.yaml), kept apart
