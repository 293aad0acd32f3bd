"""Every figure resnet-exp draws: the callbacks and the report call these, so a plot looks the
same in TensorBoard, in a run folder and in a report.

Headless by construction: figures are `matplotlib.figure.Figure` objects rendered by the Agg
canvas, never pyplot, so no display, backend choice or global figure list is involved (and a
figure is freed when its last reference goes). `save` renders once and writes both the PNG and,
given a SummaryWriter, the TensorBoard image from the same pixels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

RIGHT, WRONG = "#1a7f37", "#cf222e"  # green and red of the prediction grid's labels
DPI = 100


def plain(text: object) -> str:
    """Text drawn as written: matplotlib reads `$...$` as math, and a run's label can hold a `$`
    (a name like `${hydra:runtime.choices.model}_x`).

    >>> print(plain("cost $5 or ${name}"))
    cost \\$5 or \\${name}
    """
    return str(text).replace("$", r"\$")


def new_figure(width: float, height: float, **subplots) -> tuple[Figure, np.ndarray]:
    """A figure of `width` x `height` inches and its axes as a 2-D array."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(squeeze=False, **subplots)
    return fig, axes


def render(fig: Figure) -> np.ndarray:
    """The figure's pixels, H x W x 3 uint8."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save(fig: Figure, path: Path | str | None, writer=None, tag: str = "", step: int = 0,
         dpi: float | None = None, vector: bool = False) -> None:
    """Write the figure as a PNG at `path` and/or as image `tag` of a TensorBoard SummaryWriter;
    `dpi` renders it at that resolution instead of DPI, `vector` also writes it as PDF and SVG
    beside the PNG (same name, other suffix)."""
    if dpi is not None:
        fig.set_dpi(dpi)
    pixels = render(fig)
    if path is not None:
        from PIL import Image

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, dpi=(fig.dpi, fig.dpi))
        if vector:
            save_vector(fig, Path(path))
    if writer is not None:
        writer.add_image(tag, pixels, step, dataformats="HWC")


def save_vector(fig: Figure, path: Path) -> None:
    """The figure as `path`.pdf and `path`.svg, for a paper: text kept as text, in TrueType
    (Type 42) fonts in the PDF, since publishers' checks (IEEE PDF eXpress, ACM's TAPS) refuse
    the Type 3 fonts matplotlib embeds by default; no creation date, so the same figure gives
    the same bytes."""
    from matplotlib import rc_context

    with rc_context({"pdf.fonttype": 42, "svg.fonttype": "none", "svg.hashsalt": "report"}):
        fig.savefig(path.with_suffix(".pdf"), metadata={"CreationDate": None})
        fig.savefig(path.with_suffix(".svg"), metadata={"Date": None})


def displayable(x, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None) -> np.ndarray:
    """A batch as the network saw it (N x C x H x W, normalised with mean/std when given) back to
    N x H x W x C floats in [0, 1] for imshow."""
    x = x.detach().float().cpu()  # a torch tensor; torch itself is not imported: the report
    if mean is not None and std is not None:  # draws without it and starts in a second
        x = x * x.new_tensor(std)[:, None, None] + x.new_tensor(mean)[:, None, None]
    return x.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def image_stats(datamodule) -> tuple[list[float] | None, list[float] | None]:
    """The mean/std a batch was normalised with, to show images as they were (None: as is)."""
    if datamodule is None or not getattr(datamodule, "normalize", False):
        return None, None
    channels = getattr(datamodule, "in_channels", len(datamodule.mean))
    mean, std = list(datamodule.mean), list(datamodule.std)
    return mean * (channels // len(mean)), std * (channels // len(std))


def tile(ax, images: np.ndarray, cols: int, titles: Sequence[str] = (),
         colors: Sequence[str] = ()) -> None:
    """Images (N x H x W x C in [0, 1]) as one mosaic in one axes, a title above each tile:
    one imshow instead of N axes draws a 48-image grid in a tenth of the time."""
    n, h, w, c = images.shape
    rows = math.ceil(n / cols)
    gap, band = max(1, w // 16), (h // 3 if titles else 0)  # band: room for the titles
    mosaic = np.ones((rows * (h + band + gap), cols * (w + gap) - gap, c))  # white between
    for i, image in enumerate(images):
        top, left = (i // cols) * (h + band + gap) + band, (i % cols) * (w + gap)
        mosaic[top:top + h, left:left + w] = image
        if i < len(titles) and titles[i]:
            ax.text(left + (w - 1) / 2, top - 0.6, plain(titles[i]), ha="center", va="bottom",
                    fontsize=8, color=colors[i] if colors else "black")
    # nearest: 8x8 digits and 32x32 CIFAR images stay sharp pixels, not a blur
    ax.imshow(mosaic[..., 0] if c == 1 else mosaic, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()


# -- gradient flow (Arenas López's VGG study) -----------------------------------------------------

def draw_gradient_flow(ax, layers: Sequence[str], epochs: Mapping[int, Sequence[float]],
                       title: str = "Gradient flow") -> None:
    """Arenas López's plot (docs/studies.md#sources): x the weight layers in depth order, y the
    average absolute gradient on a log scale, one line per epoch (early epochs light, late ones
    dark)."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    ordered = sorted(epochs)
    for i, epoch in enumerate(ordered):
        shade = cmap(0.9 * (1 - i / max(len(ordered) - 1, 1)))
        label = f"epoch {epoch}" if len(ordered) <= 10 or i in (0, len(ordered) - 1) else None
        ax.plot(range(len(layers)), epochs[epoch], color=shade, alpha=0.8, lw=1.2, label=label)
    ax.set_yscale("log")
    # name every layer up to 40, beyond that about 40 evenly spaced ones (ResNet-110 has 110)
    every = max(1, len(layers) // 40)
    ticks = list(range(0, len(layers), every))
    ax.set_xticks(ticks, [plain(layers[i]) for i in ticks], rotation=90, fontsize=7)
    ax.set_xlim(-0.5, len(layers) - 0.5)
    ax.set_xlabel("layer (input to output)")
    ax.set_ylabel("average |gradient|")
    ax.set_title(plain(title))
    ax.grid(True, which="major", alpha=0.3)
    if ordered:
        ax.legend(fontsize=7, loc="best")


def gradient_flow(layers: Sequence[str], epochs: Mapping[int, Sequence[float]],
                  title: str = "Gradient flow") -> Figure:
    fig, axes = new_figure(max(6.0, 0.12 * len(layers) + 3), 5)
    draw_gradient_flow(axes[0, 0], layers, epochs, title)
    return fig


def gradient_flows(panels: Mapping[str, tuple[Sequence[str], Mapping[int, Sequence[float]]]],
                   per_row: int = 4) -> Figure:
    """Runs side by side (e.g. plain vs residual) on one shared log scale."""
    n = len(panels)
    rows, cols = math.ceil(n / per_row), min(n, per_row)
    fig, axes = new_figure(5 * cols, 4.5 * rows, nrows=rows, ncols=cols, sharey=True)
    for ax, (title, (layers, epochs)) in zip(axes.flat, panels.items(), strict=False):
        draw_gradient_flow(ax, layers, epochs, title)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig


# -- test-time figures (Khalaf's ResNet-56) -------------------------------------------------------

def confusion_matrix(matrix: np.ndarray, classes: Sequence[str], title: str) -> Figure:
    """Counts, true class down, predicted across; the numbers are written up to 20 classes."""
    from sklearn.metrics import ConfusionMatrixDisplay

    n = len(classes)
    side = min(max(5.0, 0.45 * n + 2), 30.0)
    fig, axes = new_figure(side, side)
    ax = axes[0, 0]
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=[plain(c) for c in classes]).plot(
        ax=ax, cmap="Blues", include_values=n <= 20, xticks_rotation="vertical", colorbar=n <= 20
    )
    if n > 20:
        ax.tick_params(labelsize=max(3, 9 - n // 20))
    ax.set_title(plain(title))
    return fig


def image_grid(images: np.ndarray, titles: Sequence[str] = (), colors: Sequence[str] = (),
               cols: int = 8, title: str = "") -> Figure:
    cols = min(cols, len(images))
    rows = math.ceil(len(images) / cols)
    fig, axes = new_figure(1.5 * cols, (1.5 + 0.3 * bool(titles)) * rows + 0.4)
    tile(axes[0, 0], images, cols, titles, colors)
    if title:
        fig.suptitle(plain(title))
    return fig


def predictions(images: np.ndarray, true: Sequence[int], pred: Sequence[int],
                classes: Sequence[str], title: str) -> Figure:
    """Sample predictions, "true / predicted" above each image: green when right, red when
    wrong."""
    titles = [f"{classes[t]} / {classes[p]}" for t, p in zip(true, pred, strict=True)]
    colors = [RIGHT if t == p else WRONG for t, p in zip(true, pred, strict=True)]
    return image_grid(images, titles, colors, title=title)


def augmented(original: np.ndarray, draws: Sequence[np.ndarray], title: str) -> Figure:
    """One row per training image: the stored image, then independent augmentations of it
    (no draws: the stored images in one row)."""
    if not draws:
        return image_grid(original, title=title)
    rows = np.stack([original, *draws], axis=1)  # N x (1 + draws) x H x W x C
    heads = ["stored", *(f"draw {i}" for i in range(1, len(draws) + 1))]
    return image_grid(rows.reshape(-1, *original.shape[1:]), heads, cols=rows.shape[1],
                      title=title)


# -- report figures -------------------------------------------------------------------------------

Series = tuple[Sequence[float], Sequence[float], Sequence[float] | None]  # x, mean, std (or None)


def curves(panels: Mapping[str, Mapping[str, Series]], xlabel: str = "epoch",
           log_y: Sequence[str] = ()) -> Figure:
    """One panel per metric, one line per configuration (mean over seeds, band of +-1 std);
    the panels named in `log_y` (losses) on a log scale where their values are positive."""
    n = len(panels)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = new_figure(6 * cols, 3.8 * rows, nrows=rows, ncols=cols)
    for ax, (metric, lines) in zip(axes.flat, panels.items(), strict=False):
        log = metric in log_y and all(np.min(mean) > 0 for _, mean, _ in lines.values())
        for label, (x, mean, std) in lines.items():
            marker = "o" if len(x) <= 20 else None  # a short run's few points stay visible
            (line,) = ax.plot(x, mean, lw=1.3, marker=marker, ms=3, label=plain(label))
            if std is not None:
                lo, hi = np.subtract(mean, std), np.add(mean, std)
                if log:  # a band reaching 0 or below would stretch the axis down to 1e-300
                    lo = np.maximum(lo, np.asarray(mean) / 10)
                ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
        if log:  # labelled as numbers (2.31, not 2.31x10^0), minor ticks too over a decade
            from matplotlib.ticker import LogFormatter

            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
            ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False,
                                                      minor_thresholds=(2, 0.5)))
        ax.set_title(plain(metric) + (" (log scale)" if log else ""))
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        if 0 < len(lines) <= 12:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig


def sweep(parameter: str, metric: str, lines: Mapping[str, Series], numeric: bool,
          ticks: Sequence[str] = ()) -> Figure:
    """A swept parameter against a final metric, error bars of +-1 std over seeds. Categorical
    values (e.g. model names) sit at 0..k-1 with `ticks` as their labels."""
    fig, axes = new_figure(6.5, 4.2)
    ax = axes[0, 0]
    for label, (x, mean, std) in lines.items():
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=4, lw=1.3, label=plain(label))
    if not numeric:
        ax.set_xticks(range(len(ticks)), [plain(t) for t in ticks],
                      rotation=30 if len(ticks) > 4 else 0)
    ax.set_xlabel(plain(parameter))
    ax.set_ylabel(plain(metric))
    ax.set_title(plain(f"{metric} vs {parameter}"))
    ax.grid(True, alpha=0.3)
    if 1 < len(lines) <= 12:
        ax.legend(fontsize=7)
    return fig


def bars(panels: Mapping[str, tuple[Sequence[str], Sequence[float], Sequence[float] | None]],
         title: str = "") -> Figure:
    """One panel per quantity, one bar per configuration (error bars of +-1 std when given)."""
    n = len(panels)
    fig, axes = new_figure(4.5 * n, 4.5, ncols=n)
    for ax, (quantity, (labels, values, errors)) in zip(axes.flat, panels.items(), strict=False):
        x = np.arange(len(labels))
        ax.bar(x, values, yerr=errors, capsize=4, color=[f"C{i % 10}" for i in x])
        ax.set_xticks(x, [plain(label) for label in labels], rotation=30, ha="right", fontsize=8)
        ax.set_title(plain(quantity))
        ax.grid(True, axis="y", alpha=0.3)
        positive = [v for v in values if v > 0]
        if positive and max(positive) > 100 * min(positive):  # e.g. 5k vs 11M trainable params
            ax.set_yscale("log")
        for xi, value in zip(x, values, strict=True):
            ax.annotate(f"{value:.4g}", (xi, value), ha="center", va="bottom", fontsize=7,
                        xytext=(0, 2), textcoords="offset points")
    if title:
        fig.suptitle(plain(title))
    return fig
