"""The explanation side of a training run, as files: panels, activations, SHAP, quality.

Everything is computed on the same fixed holdout panel in every run, and written under stable
relative paths, so the MLflow UI shows run against run:

    activations/activations_<layer>.png   every conv and pool layer, panel rows x channels
    explanations/panel.png                saliency, IG, SmoothGrad, Grad-CAM, occlusion
    explanations/shap_image_plot.png      SHAP's own image plot for the panel (predicted class)
    explanations/shap_class_mean.png      mean |SHAP| per true class
    explanations/quality.md               completeness, deletion/insertion, sanity, stability
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from clearsight.data import Dataset
from clearsight.data.splits import fixed_panel
from clearsight.explain import activations, explain, shap_attribution
from clearsight.explain.quality import quality_report
from clearsight.explain.render import activation_grid_pngs, figure_png, panel_figure
from clearsight.figures import class_mean_maps_figure
from clearsight.model import to_model_input

PANEL_METHODS = ("saliency", "integrated_gradients", "smoothgrad", "gradcam", "occlusion")
ACTIVATION_LAYERS = ("conv1", "pool1", "conv2", "pool2")


def shap_image_plot(values: np.ndarray, x: np.ndarray, path: Path) -> None:
    """SHAP's own image plot (it draws with pyplot, so close the figure afterwards)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import shap

    shap.image_plot([values[..., None]], x, show=False)
    figure = plt.gcf()
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def write_explanation_artifacts(
    model: keras.Model, holdout: Dataset, background: Dataset, out_dir: Path, panel_size: int = 20
) -> dict[str, float]:
    """Write the pictures and the quality report; returns the quality metrics to log."""
    panel = fixed_panel(holdout.labels, panel_size)
    x = to_model_input(holdout.pixels()[panel])
    labels = holdout.labels[panel]
    (out_dir / "activations").mkdir(parents=True, exist_ok=True)
    (out_dir / "explanations").mkdir(parents=True, exist_ok=True)

    layers = activations(model, x)
    activation_grid_pngs(
        {n: layers[n] for n in ACTIVATION_LAYERS if n in layers}, out_dir=out_dir / "activations"
    )

    attributions = [explain(model, x, method) for method in PANEL_METHODS]
    predicted = attributions[0].targets
    titles = [f"true {t}, pred {p}" for t, p in zip(labels, predicted, strict=True)]
    figure_png(panel_figure(x, attributions, labels=titles), out_dir / "explanations/panel.png")

    rng = np.random.default_rng(0)
    reference = background.pixels()[rng.choice(len(background), 100, replace=False)]
    shap_maps = shap_attribution(model, x, background=to_model_input(reference))
    first_of_each_class = slice(0, 10)  # one row per digit keeps SHAP's tall plot readable
    shap_image_plot(
        shap_maps.maps[first_of_each_class],
        x[first_of_each_class],
        out_dir / "explanations/shap_image_plot.png",
    )
    figure_png(
        class_mean_maps_figure(np.abs(shap_maps.maps), labels, "mean |SHAP|"),
        out_dir / "explanations/shap_class_mean.png",
    )

    report = quality_report(model, x)
    (out_dir / "explanations/quality.md").write_text(report.to_markdown())
    return report.metrics
