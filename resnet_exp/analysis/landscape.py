"""Loss landscape (Li, Xu, Taylor, Studer, Goldstein 2018, arXiv 1712.09913, sec 4).

Random Gaussian directions, each filter rescaled to the norm of the same filter of the trained
weights ("filter normalisation"; a filter is a slice along the output dimension), BN and bias
directions set to zero as in the paper; the loss and accuracy at w + a d1 (+ b d2) on a grid.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def filter_normalized_direction(model: nn.Module, generator: torch.Generator) -> dict:
    direction = {}
    for name, p in model.named_parameters():
        if p.dim() <= 1:  # BN scales and shifts, biases
            direction[name] = torch.zeros_like(p)
            continue
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
        dims = tuple(range(1, p.dim()))
        norm = torch.linalg.vector_norm
        scale = norm(p.detach(), dim=dims, keepdim=True) / (norm(d, dim=dims, keepdim=True) + 1e-10)
        direction[name] = d * scale
    return direction


@torch.no_grad()
def loss_and_accuracy(model, x, y, criterion, batch_size: int = 500) -> tuple[float, float]:
    loss = right = 0.0
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size])
        loss += float(criterion(logits, y[i:i + batch_size])) * len(logits)
        right += float((logits.argmax(1) == y[i:i + batch_size]).sum())
    return loss / len(x), right / len(x)


@torch.no_grad()
def surface(model: nn.Module, x: torch.Tensor, y: torch.Tensor, directions: list[dict],
            coordinates: list[tuple[float, ...]], criterion=None,
            advance: Callable[[], object] = lambda: None) -> list[tuple[float, float]]:
    """(loss, accuracy) at each point w + sum_k c_k d_k, calling `advance` after each; the
    weights are restored after."""
    criterion = criterion or nn.CrossEntropyLoss()
    params = dict(model.named_parameters())
    original = {name: p.detach().clone() for name, p in params.items()}
    results = []
    try:
        for point in coordinates:
            for name, p in params.items():
                p.copy_(original[name] + sum(c * d[name] for c, d in zip(point, directions,
                                                                         strict=True)))
            results.append(loss_and_accuracy(model, x, y, criterion))
            advance()
    finally:
        for name, p in params.items():
            p.copy_(original[name])
    return results


def landscape(model: nn.Module, x: torch.Tensor, y: torch.Tensor, points_1d: int = 51,
              points_2d: int = 21, span: float = 1.0, seed: int = 0,
              advance: Callable[[], object] = lambda: None) -> dict:
    """The 1D curve (`points_1d` points) and the 2D grid (`points_2d` squared): as many
    evaluations of the model on `x`, its cost."""
    generator = torch.Generator().manual_seed(seed)
    d1 = filter_normalized_direction(model, generator)
    d2 = filter_normalized_direction(model, generator)
    line = torch.linspace(-span, span, points_1d).tolist()
    grid = torch.linspace(-span, span, points_2d).tolist()
    one = surface(model, x, y, [d1], [(a,) for a in line], advance=advance)
    two = surface(model, x, y, [d1, d2], [(a, b) for a in grid for b in grid],
                  advance=advance)
    return {"span": span, "alphas": line, "loss_1d": [v[0] for v in one],
            "accuracy_1d": [v[1] for v in one], "grid": grid,
            "loss_2d": [[two[i * points_2d + j][0] for j in range(points_2d)]
                        for i in range(points_2d)]}
