"""Rendering: real PNGs of the right size, polarity handling, grids, the panel figure."""

import io

import matplotlib.image
import numpy as np
import pytest

from clearsight.explain import activations, explain
from clearsight.explain.render import (
    activation_grid_pngs,
    figure_png,
    heatmap_png,
    overlay_png,
    panel_figure,
    scaled,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _decode(data: bytes) -> np.ndarray:
    return matplotlib.image.imread(io.BytesIO(data), format="png")


@pytest.mark.parametrize("polarity", ["positive", "negative", "absolute", "signed"])
def test_scaled_range_follows_polarity(polarity):
    values = np.linspace(-2, 4, 28 * 28).reshape(28, 28)
    unit = scaled(values, polarity, clip_percentile=None)
    low = -1.0 if polarity == "signed" else 0.0
    assert unit.min() >= low and unit.max() <= 1.0 and np.abs(unit).max() == pytest.approx(1.0)
    if polarity == "negative":
        assert unit[0, 0] == pytest.approx(1.0) and unit[-1, -1] == 0.0


def test_clip_percentile_keeps_one_hot_pixel_from_washing_out_the_map():
    values = np.ones((28, 28))
    values[0, 0] = 1000.0
    assert scaled(values, "positive", 99.0)[5, 5] == pytest.approx(1.0)
    assert scaled(values, "positive", None)[5, 5] < 0.01


def test_heatmap_and_overlay_are_pngs_of_the_scaled_size(tmp_path, panel):
    values = np.random.default_rng(0).normal(size=(28, 28))
    data = heatmap_png(values, scale=4, path=tmp_path / "h" / "map.png")
    assert data.startswith(PNG) and (tmp_path / "h" / "map.png").read_bytes() == data
    assert _decode(data).shape[:2] == (112, 112)
    over = overlay_png(panel[0], values, polarity="absolute", scale=2)
    assert _decode(over).shape[:2] == (56, 56)


def test_activation_grids_one_png_per_layer(trained, panel, tmp_path):
    outputs = activations(trained.model, panel[:3])
    pngs = activation_grid_pngs(outputs, max_channels=8, scale=1, out_dir=tmp_path)
    assert set(pngs) == set(outputs)
    conv1 = _decode(pngs["conv1"])
    assert conv1.shape[:2] == (3 * 27, 8 * 27)  # 3 images x 8 channels of 26 px + 1 px gaps
    assert (tmp_path / "activations_conv2.png").exists()


def test_panel_figure_rows_are_images_and_columns_methods(trained, panel, tmp_path):
    x = panel[:3]
    attributions = [explain(trained.model, x, m) for m in ("saliency", "grad_cam")]
    figure = panel_figure(x, attributions)
    assert len(figure.axes) == 3 * 3
    data = figure_png(figure, tmp_path / "panel.png", dpi=50)
    assert data.startswith(PNG) and _decode(data).shape[0] > _decode(data).shape[1] * 0.5
