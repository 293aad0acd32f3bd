"""Early stopping, off unless asked for: Lightning's EarlyStopping on the run's `monitor`.

    python -m resnet_exp callbacks.early_stopping.patience=5

`patience` null (the default) builds no callback, so the conf tree can carry its settings for
every run while only the runs that ask for it stop early."""

from __future__ import annotations

from pytorch_lightning.callbacks import EarlyStopping


def early_stopping(patience: int | None, monitor: str, mode: str = "max",
                   min_delta: float = 0.0) -> EarlyStopping | None:
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` validations
    in a row; the final test then reports the best checkpoint as always."""
    if patience is None:
        return None
    return EarlyStopping(monitor=monitor, mode=mode, patience=patience, min_delta=min_delta,
                         check_finite=False)  # non-finite losses: StopOnNonFinite (guards.py)
