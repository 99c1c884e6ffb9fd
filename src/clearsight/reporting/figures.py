"""Pictures of a training run: where people would rather look than read.

Built with matplotlib's object API (``Figure``), not pyplot: no global state, no display
backend, safe in worker threads and servers.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from matplotlib.figure import Figure

from clearsight.model.evaluation import Evaluation


def names_for(evaluation: Evaluation, class_names: Sequence[str] | None) -> list[str]:
    """The class names to print, one per model output (indices when none are given)."""
    if class_names is None:
        return [str(c) for c in evaluation.classes]
    if len(class_names) != evaluation.n_classes:
        raise ValueError(f"{len(class_names)} class names for {evaluation.n_classes} outputs")
    return list(class_names)


def confusion_matrix_figure(
    evaluation: Evaluation, class_names: Sequence[str] | None = None
) -> Figure:
    """Counts with row-normalised colour, so rare mistakes stay visible."""
    cm = evaluation.confusion
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    names = names_for(evaluation, class_names)
    n = len(names)
    side = min(16.0, max(5.6, 0.45 * n))  # 10 digits keep the old size; many classes grow it
    fig = Figure(figsize=(side + 0.8, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (row, col), count in np.ndenumerate(cm):
        if count:
            color = "white" if share[row, col] > 0.5 else "black"
            ax.text(col, row, str(count), ha="center", va="center", fontsize=8, color=color)
    ax.tick_params(axis="x", labelrotation=90 if max(map(len, names)) > 3 else 0)
    ax.set(
        xticks=range(n),
        yticks=range(n),
        xticklabels=names,
        yticklabels=names,
        xlabel="predicted",
        ylabel="true",
        title=f"Holdout confusion matrix (accuracy {evaluation.accuracy:.2%})",
    )
    fig.colorbar(image, ax=ax, label="share of true class")
    return fig


def learning_curves_figure(history: dict[str, list[float]]) -> Figure:
    """Loss and accuracy per epoch, train against validation."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        epochs = np.arange(1, len(history[metric]) + 1)
        ax.plot(epochs, history[metric], marker="o", label="train")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], marker="o", label="validation")
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def misclassified_gallery(
    pixels: np.ndarray,
    evaluation: Evaluation,
    max_images: int = 36,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """The holdout images the model got wrong, most confident mistakes first (grey images in
    grey, colour images in their colours)."""
    names = names_for(evaluation, class_names)
    wrong = np.flatnonzero(~evaluation.correct)
    confidence = evaluation.probabilities[wrong, evaluation.predictions[wrong]]
    wrong = wrong[np.argsort(-confidence)][:max_images]
    cols = 6
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    fig = Figure(figsize=(cols * 1.6, rows * 1.8 + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, wrong, strict=False):
        ax.imshow(pixels[i], cmap="gray" if pixels[i].ndim == 2 else None)
        p = evaluation.probabilities[i, evaluation.predictions[i]]
        true, predicted = names[evaluation.labels[i]], names[evaluation.predictions[i]]
        ax.set_title(f"true {true} -> {predicted} ({p:.0%})", fontsize=8)
    fig.suptitle(f"Misclassified holdout images ({(~evaluation.correct).sum()} in all)")
    return fig


def filter_grid(model: keras.Model, layer_name: str) -> Figure:
    """A conv layer's kernels; multi-channel kernels are averaged over input channels."""
    kernel = keras.ops.convert_to_numpy(model.get_layer(layer_name).kernel)  # (h, w, in, out)
    maps = kernel.mean(axis=2).transpose(2, 0, 1)
    n = maps.shape[0]
    cols = 8
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(cols * 1.1, rows * 1.1 + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    limit = float(np.abs(maps).max()) or 1.0
    for ax in axes:
        ax.axis("off")
    for ax, m in zip(axes, maps, strict=False):
        ax.imshow(m, cmap="RdBu_r", vmin=-limit, vmax=limit)
    fig.suptitle(f"{layer_name} filters {kernel.shape[:2]} (red +, blue -)")
    return fig
