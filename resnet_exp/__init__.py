"""resnet-exp: config-driven experiments on residual networks.

Kept import-free on purpose: `python -m resnet_exp --help` must not pay for torch (usage.py);
the Python API (`resnet_exp.run`, `resnet_exp.load_run`: api.py) loads on first use.
"""

__version__ = "0.1.0"
__all__ = ["load_run", "run"]


def __getattr__(name: str):
    if name in __all__:
        from resnet_exp import api

        return getattr(api, name)
    raise AttributeError(f"module 'resnet_exp' has no attribute {name!r}")
