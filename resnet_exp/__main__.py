"""`python -m resnet_exp [group=option ...] [key=value ...]`: one run, or a sweep with `-m`.

Imports only Hydra at module level: `--help` and `--cfg job` answer without loading torch.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from resnet_exp.errors import UserError


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from resnet_exp.train import train  # torch and Lightning load here, when a run starts

    try:
        metrics = train(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    # The sweep objective (Optuna and other sweepers maximise it): the best validation score.
    return metrics.get(f"{cfg.monitor}_best", metrics.get(cfg.monitor))


if __name__ == "__main__":
    main()
