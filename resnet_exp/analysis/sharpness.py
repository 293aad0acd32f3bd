"""Sharpness: the largest eigenvalue of the loss Hessian at the trained weights.

Power iteration on Hessian-vector products (forward-over-reverse with torch.func: `jvp` of
`grad`), never forming the Hessian. It stops when the estimate changes by less than `tol`
relative to the last one, or after `iterations`; both the estimate and that change are
reported. The model is evaluated with its BN running statistics (evaluation mode).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, jvp

from resnet_exp.analysis.base import Analysis


def top_eigenvalue(loss: Callable[[dict], torch.Tensor], params: dict, iterations: int = 100,
                   tol: float = 1e-3, seed: int = 0,
                   advance: Callable[[], object] = lambda: None) -> dict:
    """The eigenvalue of largest magnitude of the Hessian of `loss` at `params` (a dict of
    tensors); `advance` is called after each iteration (one Hessian-vector product)."""
    generator = torch.Generator().manual_seed(seed)
    v = {k: torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
         for k, p in params.items()}
    gradient = grad(loss)
    estimate, change = float("nan"), float("inf")
    for i in range(1, iterations + 1):
        norm = torch.sqrt(sum((t * t).sum() for t in v.values()))
        v = {k: t / norm for k, t in v.items()}
        _, hv = jvp(gradient, (params,), (v,))
        new = float(sum((hv[k] * v[k]).sum() for k in v))  # Rayleigh quotient, |v| = 1
        change = abs(new - estimate) / max(abs(new), 1e-12) if i > 1 else float("inf")
        estimate, v = new, hv
        advance()
        if change < tol:
            break
    return {"eigenvalue": estimate, "iterations": i, "relative_change": change}


def sharpness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, iterations: int = 100,
              tol: float = 1e-3, criterion=None,
              advance: Callable[[], object] = lambda: None) -> dict:
    criterion = criterion or nn.CrossEntropyLoss()
    params = {k: p.detach() for k, p in model.named_parameters()}
    buffers = {k: b.detach() for k, b in model.named_buffers()}

    def loss(p: dict) -> torch.Tensor:
        return criterion(functional_call(model, (p, buffers), (x,)), y)

    return top_eigenvalue(loss, params, iterations, tol, advance=advance)


class Sharpness(Analysis):
    """`analysis=sharpness`: at most `iterations` power iterations, stopped when the eigenvalue
    changes by less than `tol`, relatively."""

    def __init__(self, iterations: int = 100, tol: float = 1e-3) -> None:
        self.iterations, self.tol = iterations, tol

    def cost(self, model: nn.Module, others: int = 0) -> int:
        return self.iterations

    def run(self, model, x, y, others=(), advance=lambda: None) -> dict:
        result = sharpness(model, x, y, iterations=self.iterations, tol=self.tol, advance=advance)
        return result | {"summary": {"sharpness": result["eigenvalue"]}}
