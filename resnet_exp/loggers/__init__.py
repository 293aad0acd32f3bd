"""The loggers a run writes to, beside its own folder: each is Lightning's, made an extension of
the run (resnet_exp/runs/extension.py) so that it continues an interrupted run and records the
run's settings and results at its end.

    tensorboard.py   TensorBoard: the curves, figures and the HPARAMS table (`logger=tensorboard`)
    mlflow.py        MLflow: one MLflow run per run folder (`logger=mlflow`)
    wandb.py         Weights & Biases: one W&B run per run folder, offline too (`logger=wandb`)

Lightning's own loggers (CSVLogger, CometLogger, ...) work as they are, named in conf/logger/:
they get the settings as hyperparameters and the final numbers as metrics.
"""
