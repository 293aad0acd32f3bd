"""Loss landscape (Li, Xu, Taylor, Studer, Goldstein 2018, arXiv 1712.09913, sec 4).

Random Gaussian directions, each filter rescaled to the norm of the same filter of the trained
weights ("filter normalisation"; a filter is a slice along the output dimension), BN and bias
directions set to zero as in the paper; the loss and accuracy at w + a d1 (+ b d2) on a grid.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from resnet_exp.analysis.base import Analysis


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


class Landscape(Analysis):
    """`analysis=landscape`: the loss along one direction (`points`) and over a plane (`grid`
    squared evaluations: the expensive one), from -`span` to `span`."""

    def __init__(self, points: int = 51, grid: int = 21, span: float = 1.0) -> None:
        self.points, self.grid, self.span = points, grid, span

    def cost(self, model: nn.Module, others: int = 0) -> int:
        return self.points + self.grid ** 2

    def run(self, model, x, y, others=(), advance=lambda: None) -> dict:
        result = landscape(model, x, y, self.points, self.grid, self.span, advance=advance)
        alphas, loss = result["alphas"], result["loss_1d"]

        def at(alpha: float) -> float:
            return loss[min(range(len(alphas)), key=lambda i: abs(alphas[i] - alpha))]

        # how far the loss climbs half-way out along the direction, both ways on average
        rise = (at(-self.span / 2) + at(self.span / 2)) / 2 - at(0.0)
        return result | {"summary": {"landscape_rise_at_half_span": rise}}

    def figure(self, result: dict):
        from resnet_exp.core import figures

        fig, axes = figures.new_figure(10, 4, ncols=2)
        a, b = axes[0]
        a.plot(result["alphas"], result["loss_1d"])
        a.set(xlabel="alpha (filter-normalised direction)", ylabel="loss")
        # loss_2d[i][j] is at (alpha_i, beta_j): rows are alpha, contour's y axis
        contour = b.contour(result["grid"], result["grid"], result["loss_2d"], levels=20)
        b.set(xlabel="beta (second direction)", ylabel="alpha")
        fig.colorbar(contour, ax=b, label="loss")
        return fig
