"""This project's Hydra sweepers: Hydra loads sweepers only from the `hydra_plugins` package."""
