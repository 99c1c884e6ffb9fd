"""A training run's files: evaluation pictures and tables, explanations, activations, quality.

Everything is written under stable relative paths of one folder, which ``tracking.run`` logs
as the run's artifacts, so the MLflow UI shows run against run:

    evaluation/confusion_matrix.png       holdout counts, row-normalised colour
    evaluation/misclassified.png          the most confident mistakes
    evaluation/per_class_metrics.csv      precision, recall and support per class (by name)
    task.json                             the task: image shape, channels, class names
    training/learning_curves.png          loss and accuracy per epoch
    model/filters_<layer>.png             the conv kernels
    activations/activations_<layer>.png   every conv and pool layer, panel rows x channels
    explanations/panel.png                saliency, IG, SmoothGrad, Grad-CAM, occlusion
    explanations/shap_image_plot.png      SHAP's own image plot (predicted class)
    explanations/shap_class_mean.png      mean |SHAP| per true class
    explanations/quality.md               completeness, deletion/insertion, sanity, stability
    acceptance/panel.npz                  the panel with the model's probabilities, which a
                                          service checks a freshly loaded copy against

Explanations are computed on the fixed holdout panel (``data.holdout_panel``), the same
digits in every run and in every promotion.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import keras
import numpy as np

from clearsight.choices import QUALITY_METHODS
from clearsight.data import Dataset
from clearsight.explain import activations, explain, shap_attribution
from clearsight.explain.quality import quality_report
from clearsight.explain.render import (
    activation_grid_pngs,
    class_mean_maps_figure,
    figure_png,
    panel_figure,
)
from clearsight.inference import acceptance
from clearsight.model.evaluation import Evaluation, predict_probabilities
from clearsight.quality_metrics import QualityMetrics
from clearsight.reporting import figures
from clearsight.task import DIGITS, ImageTask, to_model_input

TASK_ARTIFACT = "task.json"

ACTIVATION_LAYERS = ("conv1", "pool1", "conv2", "pool2")
FILTER_LAYERS = ("conv1", "conv2")


def write_evaluation_artifacts(
    model: keras.Model,
    evaluation: Evaluation,
    history: dict[str, list[float]],
    holdout_pixels: np.ndarray,
    out_dir: Path,
    task: ImageTask = DIGITS,
) -> None:
    """Confusion matrix, mistakes, per-class table, learning curves and filters, with the
    task's class names, and the task itself (``task.json``)."""
    names = figures.names_for(evaluation, task.class_names)
    write_task(task, out_dir)
    figure_png(
        figures.confusion_matrix_figure(evaluation, names),
        out_dir / "evaluation/confusion_matrix.png",
    )
    figure_png(
        figures.misclassified_gallery(holdout_pixels, evaluation, class_names=names),
        out_dir / "evaluation/misclassified.png",
    )
    figure_png(figures.learning_curves_figure(history), out_dir / "training/learning_curves.png")
    for layer in FILTER_LAYERS:
        figure_png(figures.filter_grid(model, layer), out_dir / f"model/filters_{layer}.png")
    support = evaluation.confusion.sum(axis=1)
    # csv quotes a class name with a comma in it; the index keeps rows joinable to metrics.
    with (out_dir / "evaluation/per_class_metrics.csv").open("w", newline="") as table:
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow(["class", "name", "precision", "recall", "support"])
        for c, (p, r) in enumerate(
            zip(evaluation.per_class_precision, evaluation.per_class_recall, strict=True)
        ):
            writer.writerow([c, names[c], f"{p:.4f}", f"{r:.4f}", int(support[c])])


def write_task(task: ImageTask, out_dir: Path) -> None:
    """``task.json``: what the run's model takes and answers, readable without loading it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / TASK_ARTIFACT).write_text(json.dumps(task.to_metadata(), indent=2) + "\n")


def write_acceptance_panel(model: keras.Model, panel: Dataset, out_dir: Path) -> None:
    """The panel's digits, labels and this model's probabilities (``inference.acceptance``)."""
    pixels = panel.pixels()
    probabilities = predict_probabilities(model, pixels)
    acceptance.Panel(pixels, panel.labels, probabilities).save(out_dir / acceptance.ARTIFACT)


def shap_image_plot(values: np.ndarray, x: np.ndarray, path: Path) -> None:
    """SHAP's own image plot (it draws with pyplot, so close the figure afterwards)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import shap

    shap.image_plot([values if values.ndim == 4 else values[..., None]], x, show=False)
    figure = plt.gcf()
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def write_explanation_artifacts(
    model: keras.Model, panel: Dataset, background: Dataset, out_dir: Path
) -> QualityMetrics:
    """Write the pictures and the quality report of ``panel``; returns the quality numbers."""
    x = to_model_input(panel.pixels())
    labels = panel.labels
    (out_dir / "activations").mkdir(parents=True, exist_ok=True)
    (out_dir / "explanations").mkdir(parents=True, exist_ok=True)

    layers = activations(model, x)
    activation_grid_pngs(
        {n: layers[n] for n in ACTIVATION_LAYERS if n in layers}, out_dir=out_dir / "activations"
    )

    attributions = [explain(model, x, method) for method in QUALITY_METHODS]
    predicted = attributions[0].targets
    names = panel.class_names or DIGITS.class_names
    titles = [f"true {names[t]}, pred {names[p]}" for t, p in zip(labels, predicted, strict=True)]
    figure_png(panel_figure(x, attributions, labels=titles), out_dir / "explanations/panel.png")

    rng = np.random.default_rng(0)
    reference = background.pixels()[
        rng.choice(len(background), min(100, len(background)), replace=False)
    ]
    shap_maps = shap_attribution(model, x, background=to_model_input(reference))
    first_of_each_class = slice(0, 10)  # one row per class keeps SHAP's tall plot readable
    per_channel = shap_maps.channel_maps if shap_maps.channel_maps is not None else shap_maps.maps
    shap_image_plot(
        per_channel[first_of_each_class],
        x[first_of_each_class],
        out_dir / "explanations/shap_image_plot.png",
    )
    figure_png(
        class_mean_maps_figure(
            np.abs(shap_maps.maps), labels, "mean |SHAP|", len(names), class_names=names
        ),
        out_dir / "explanations/shap_class_mean.png",
    )

    report = quality_report(model, x)
    (out_dir / "explanations/quality.md").write_text(report.to_markdown())
    return report.quality
