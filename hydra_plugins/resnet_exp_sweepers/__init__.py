"""This project's Hydra sweeper (Optuna) and SLURM launcher: Hydra loads plugins only from the
`hydra_plugins` package."""
