"""resnet-exp: config-driven experiments on residual networks.

Kept import-free on purpose: `python -m resnet_exp --help` must not pay for torch (usage.py).
"""

__version__ = "0.1.0"
