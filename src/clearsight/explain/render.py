"""Attribution maps and activations as PNG images, with matplotlib's Agg canvas only.

Nothing here touches ``pyplot``: figures are built on ``matplotlib.figure.Figure`` with an
Agg canvas, so rendering works in servers, workers and tests without a display or global
state. Every function returns PNG bytes and, given ``path``, also writes them there.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from clearsight.explain.attribution import Attribution
from clearsight.explain.catalogue import Polarity, get_method

DIVERGING = "RdBu_r"  # signed maps: red for the target, blue against, white at zero
SEQUENTIAL = "inferno"


def scaled(
    values: np.ndarray, polarity: Polarity = "signed", clip_percentile: float | None = 99.0
) -> np.ndarray:
    """The map in [-1, 1] (signed) or [0, 1] (other polarities), robust to a few extremes.

    Values are divided by the ``clip_percentile`` of their magnitudes (the max if None) and
    clipped, so one hot pixel does not wash the rest of the map out.
    """
    values = np.asarray(values, dtype=np.float32)
    if polarity == "positive":
        values = np.maximum(values, 0.0)
    elif polarity == "negative":
        values = np.maximum(-values, 0.0)
    elif polarity == "absolute":
        values = np.abs(values)
    elif polarity != "signed":
        raise ValueError(f"polarity must be positive, negative, absolute or signed: {polarity!r}")
    magnitude = np.abs(values)
    top = np.percentile(magnitude, clip_percentile) if clip_percentile else magnitude.max()
    if top <= 0:
        top = magnitude.max() or 1.0
    unit: np.ndarray = np.clip(values / top, -1.0, 1.0)
    return unit


def heatmap_rgba(
    values: np.ndarray,
    polarity: Polarity = "signed",
    cmap: str | None = None,
    clip_percentile: float | None = 99.0,
) -> np.ndarray:
    """(H, W, 4) float RGBA: a diverging colormap for signed maps, a sequential one otherwise."""
    unit = scaled(values, polarity, clip_percentile)
    if polarity == "signed":
        rgba: np.ndarray = matplotlib.colormaps[cmap or DIVERGING]((unit + 1.0) / 2.0)
    else:
        rgba = matplotlib.colormaps[cmap or SEQUENTIAL](unit)
    return rgba


def _enlarge(rgba: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling: each pixel of a 28x28 map stays a crisp square."""
    return np.repeat(np.repeat(rgba, scale, axis=0), scale, axis=1) if scale > 1 else rgba


def _kept(buffer: io.BytesIO, path: str | Path | None) -> bytes:
    """The buffer's bytes, also written to ``path`` (folders created) when one is given."""
    data = buffer.getvalue()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data


def png_bytes(rgba: np.ndarray, path: str | Path | None = None) -> bytes:
    """Encode an (H, W, 3|4) float image in 0-1 as PNG (and write it to ``path``)."""
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, np.clip(rgba, 0.0, 1.0), format="png")
    return _kept(buffer, path)


def heatmap_png(
    values: np.ndarray,
    *,
    polarity: Polarity = "signed",
    cmap: str | None = None,
    clip_percentile: float | None = 99.0,
    scale: int = 8,
    path: str | Path | None = None,
) -> bytes:
    """A map (H, W) as a colour PNG, ``scale`` times larger."""
    return png_bytes(_enlarge(heatmap_rgba(values, polarity, cmap, clip_percentile), scale), path)


def overlay_png(
    image: np.ndarray,
    values: np.ndarray,
    *,
    polarity: Polarity = "positive",
    cmap: str | None = None,
    clip_percentile: float | None = 99.0,
    alpha: float = 0.8,
    dim: float = 0.4,
    scale: int = 8,
    path: str | Path | None = None,
) -> bytes:
    """The map over the image, dimmed to ``dim`` so colours stand out: opacity follows the
    map's magnitude, so pixels that matter are coloured and the rest of the image shows.

    ``image`` is grey (H, W) or (H, W, 1), or colour (H, W, 3), in any range (uint8 0-255 or
    float 0-1: it is stretched to its own min-max), and is drawn in RGB under the map (H, W).
    """
    base = rgb_image(image, np.shape(values))
    base = dim * (base - base.min()) / (np.ptp(base) or 1.0)
    colours = heatmap_rgba(values, polarity, cmap, clip_percentile)[..., :3]
    weight = alpha * np.abs(scaled(values, polarity, clip_percentile))[..., None]
    blended = (1.0 - weight) * base + weight * colours
    return png_bytes(_enlarge(blended, scale), path)


def rgb_image(image: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """``image`` as float (H, W, 3): a grey (H, W[, 1]) image repeated into three channels,
    a colour one as it is; anything else, or another size than ``size`` (H, W), is a clear
    ``ValueError`` naming both shapes."""
    pixels = np.asarray(image, np.float32)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    if pixels.ndim != 3 or pixels.shape[-1] != 3 or pixels.shape[:2] != tuple(size):
        raise ValueError(
            f"cannot draw a {tuple(size)} map over an image of shape {np.shape(image)}: "
            "the image must be (H, W), (H, W, 1) or (H, W, 3) of the map's size"
        )
    return pixels


def _tile(channels: np.ndarray, pad: int = 1) -> np.ndarray:
    """(rows, cols, h, w) -> one (rows*(h+pad), cols*(w+pad)) mosaic, NaN in the gaps."""
    rows, cols, h, w = channels.shape
    mosaic = np.full((rows * (h + pad), cols * (w + pad)), np.nan, np.float32)
    for r in range(rows):
        for c in range(cols):
            mosaic[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = channels[
                r, c
            ]
    return mosaic


def activation_grid_pngs(
    layer_outputs: Mapping[str, np.ndarray],
    *,
    max_channels: int = 32,
    cmap: str = "viridis",
    scale: int = 4,
    out_dir: str | Path | None = None,
) -> dict[str, bytes]:
    """One PNG per layer: rows = images of the panel, columns = channels (up to
    ``max_channels``). Each channel is scaled to its own range across the panel so images
    compare within a channel. Dense/flat outputs (N, units) become one strip per image.
    """
    pngs = {}
    colormap = matplotlib.colormaps[cmap].with_extremes(bad="white")
    for name, output in layer_outputs.items():
        output = np.asarray(output, np.float32)
        if output.ndim == 4:
            channels = np.moveaxis(output[..., :max_channels], -1, 1)  # (N, C, h, w)
            low = channels.min(axis=(0, 2, 3), keepdims=True)
            span = np.ptp(channels, axis=(0, 2, 3), keepdims=True)
            mosaic = _tile((channels - low) / np.where(span > 0, span, 1.0))
        elif output.ndim == 2:
            low, span = output.min(axis=0), np.ptp(output, axis=0)
            mosaic = np.repeat((output - low) / np.where(span > 0, span, 1.0), 4, axis=0)
        else:
            continue
        path = Path(out_dir) / f"activations_{name}.png" if out_dir else None
        pngs[name] = png_bytes(_enlarge(colormap(np.ma.masked_invalid(mosaic)), scale), path)
    return pngs


def panel_figure(
    images: np.ndarray,
    attributions: Sequence[Attribution],
    *,
    labels: Sequence[str] | None = None,
    polarity: Polarity | None = None,
    clip_percentile: float | None = 99.0,
    cell_inches: float = 1.4,
) -> Figure:
    """A grid a training run can log: rows = (image, target) rows, columns = the input
    followed by one column per method, each in its ranking polarity unless ``polarity``
    is given. All attributions must explain the same rows."""
    images = np.asarray(images, np.float32)
    rows = attributions[0].image_index
    n_rows, n_cols = len(rows), len(attributions) + 1
    figure = Figure(figsize=(cell_inches * n_cols, cell_inches * n_rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    for r, image_row in enumerate(rows):
        shown_image = images[image_row].squeeze()  # grey (H, W) or colour (H, W, 3) in 0-1
        if shown_image.ndim == 3:
            shown_image = np.clip(shown_image, 0.0, 1.0)
        axes[r, 0].imshow(shown_image, cmap="gray")
        title = labels[r] if labels else f"target {attributions[0].targets[r]}"
        axes[r, 0].set_title(title, fontsize=7)
        for c, attribution in enumerate(attributions, start=1):
            shown = polarity or get_method(attribution.method).ranking
            axes[r, c].imshow(heatmap_rgba(attribution.maps[r], shown, None, clip_percentile))
            if r == 0:
                axes[r, c].set_title(attribution.method, fontsize=7)
    for axis in axes.flat:
        axis.set_axis_off()
    return figure


def figure_png(figure: Figure, path: str | Path | None = None, dpi: int = 100) -> bytes:
    """A figure as PNG bytes (and a file at ``path``)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return _kept(buffer, path)


def class_mean_maps_figure(
    maps: np.ndarray,
    labels: np.ndarray,
    title: str,
    n_classes: int = 10,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """One heatmap per class: the mean of ``maps`` over the images of that class, titled
    with the class's name when ``class_names`` are given (its index otherwise)."""
    fig = Figure(figsize=(1.2 * n_classes, 1.8), layout="constrained")
    axes = fig.subplots(1, n_classes)
    present = [c for c in range(n_classes) if np.any(labels == c)]
    peak = max((float(maps[labels == c].mean(axis=0).max()) for c in present), default=1.0)
    for c, ax in enumerate(axes):
        ax.axis("off")
        if c in present:
            ax.imshow(maps[labels == c].mean(axis=0), cmap="magma", vmin=0, vmax=peak or 1.0)
            name = class_names[c] if class_names else str(c)
            ax.set_title(f"{name} (n={int(np.sum(labels == c))})", fontsize=8)
    fig.suptitle(title)
    return fig
