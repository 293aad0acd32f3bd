"""Linear CKA between layers (Kornblith, Norouzi, Lee, Hinton 2019, arXiv 1905.00414), in its
minibatch form (Nguyen, Raghu, Kornblith 2021, arXiv 2010.15327, sec 3.1): the unbiased HSIC of
Song et al. 2012 averaged over minibatches, so memory is one minibatch's Gram matrices.

CKA(X, Y) = mean HSIC(K, L) / sqrt(mean HSIC(K, K) * mean HSIC(L, L)), K = X X^T, L = Y Y^T:
1 for a representation and itself, unchanged by orthogonal transforms and isotropic scaling of
either (tests/test_analysis.py). Written here rather than taken from PyPI: ckatorch and
cka-pytorch describe themselves as personal or educational projects, torch_cka and pytorch-cka
are single-author packages, and the estimator is a dozen lines whose properties the tests check.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from resnet_exp.analysis.base import Analysis
from resnet_exp.models.structure import structure_of


def hsic(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC of two n x n Gram matrices (Song et al. 2012, eq. 5), n > 3."""
    n = K.shape[0]
    K = K - torch.diag(torch.diag(K))
    L = L - torch.diag(torch.diag(L))
    KL = K @ L
    term = torch.trace(KL) + K.sum() * L.sum() / ((n - 1) * (n - 2)) - 2 * KL.sum() / (n - 2)
    return term / (n * (n - 3))


def cka(xs: list[torch.Tensor], ys: list[torch.Tensor]) -> float:
    """Minibatch linear CKA of two representations given batch by batch (N_i x features)."""
    kl = kk = ll = 0.0
    for x, y in zip(xs, ys, strict=True):
        x, y = x.flatten(1).double(), y.flatten(1).double()
        K, L = x @ x.T, y @ y.T
        kl, kk, ll = kl + hsic(K, L), kk + hsic(K, K), ll + hsic(L, L)
    return float(kl / torch.sqrt(kk * ll))


def layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers compared, as the model declares them (`structure()`): every block, or, for a
    model without blocks (BaselineCNN), the output of each stage, its last module's."""
    declared = structure_of(model)
    names = [block.name for block in declared.blocks] or [stage[-1] for stage in declared.stages]
    return [(name, model.get_submodule(name)) for name in names]


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, batch_size: int) -> tuple[list[str], list]:
    """The output of every layer (`layers`), batch by batch: (layer names, [per layer: [per
    batch: tensor]])."""
    named = layers(model)
    seen: dict[str, list] = {name: [] for name, _ in named}
    hooks = [module.register_forward_hook(
        lambda m, i, out, name=name: seen[name].append(out.detach()))
        for name, module in named]
    try:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
    finally:
        for hook in hooks:
            hook.remove()
    return list(seen), list(seen.values())


def cka_matrix(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor,
               batch_size: int = 100, advance: Callable[[], object] = lambda: None) -> dict:
    """CKA between every layer of `model_a` and every layer of `model_b` on the same images;
    `advance` is called after each row (a layer of `model_a`)."""
    names_a, a = features(model_a, x, batch_size)
    names_b, b = (names_a, a) if model_b is model_a else features(model_b, x, batch_size)
    rows = []
    for fa in a:
        rows.append([cka(fa, fb) for fb in b])
        advance()
    return {"layers_a": names_a, "layers_b": names_b, "cka": rows}


class CKA(Analysis):
    """`analysis=cka`: CKA between the run's own layers and, from `python -m resnet_exp.analyze`
    with several runs, between the first run's and each other one's."""

    def missing(self, model: nn.Module) -> str | None:
        return None if layers(model) else "blocks or stages to compare"

    def cost(self, model: nn.Module, others: int = 0) -> int:
        return len(layers(model)) * (1 + others)

    def run(self, model, x, y, others=(), advance=lambda: None) -> dict:
        matrices = {"self": cka_matrix(model, model, x, advance=advance)}
        for other_dir, other in others:
            matrices[str(other_dir)] = cka_matrix(model, other, x, advance=advance)
        own = matrices["self"]["cka"]
        adjacent = [own[i][i + 1] for i in range(len(own) - 1)]
        return {"matrices": matrices,
                "summary": {"cka_adjacent_mean": sum(adjacent) / max(len(adjacent), 1)}}

    def figure(self, result: dict):
        from pathlib import Path

        from resnet_exp.core import figures

        matrices = result["matrices"]
        fig, axes = figures.new_figure(4 * len(matrices), 4, ncols=len(matrices))
        for ax, (label, matrix) in zip(axes[0], matrices.items(), strict=True):
            image = ax.imshow(matrix["cka"], vmin=0, vmax=1, origin="lower", cmap="magma")
            ax.set(title=figures.plain(label if label == "self" else Path(label).name),
                   xlabel="layer", ylabel="layer")
        fig.colorbar(image, ax=axes[0][-1])
        return fig
