"""Explanations of colour and small models: every method on C channels, the quality measures
unchanged, overlays in RGB (issue #23.4). A tiny 16x16x3 model (3 classes) and an 8x8 grey one
are built inline (``tests/explain/tiny.py``) and fitted for a few seconds."""

from __future__ import annotations

import io
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from clearsight.errors import ImageError
from clearsight.explain import explain, integrated_gradients, saliency
from clearsight.explain.methods import occlusion_window
from clearsight.explain.quality import attribution_curves, quality_report, sobel_magnitude
from clearsight.explain.render import overlay_png, panel_figure
from clearsight.quality_metrics import COMPLETENESS_GAP_MEDIAN, randomization_spearman
from clearsight.reporting.image_report import explain_file, model_task

from .conftest import TrainedSeed
from .tiny import colour_model, grey_model

PER_CHANNEL = ("saliency", "integrated_gradients", "smoothgrad")
PER_PIXEL = ("grad_cam", "occlusion")


@pytest.fixture(scope="module")
def colour() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    return colour_model()


@pytest.fixture(scope="module")
def small_grey(trained: TrainedSeed) -> tuple[keras.Model, np.ndarray]:
    digits = np.round(trained.x_test[:400, ..., 0] * 255).astype(np.uint8)
    return grey_model(digits, trained.y_test[:400])


@pytest.mark.parametrize("method", PER_CHANNEL + PER_PIXEL)
def test_every_method_gives_one_map_per_image_on_colour(colour, method):
    model, x, _ = colour
    result = explain(model, x[:4], method)
    assert result.maps.shape == (4, 16, 16) and np.isfinite(result.maps).all()
    assert np.abs(result.maps).max() > 0
    if method in PER_CHANNEL:
        assert result.channel_maps is not None and result.channel_maps.shape == (4, 16, 16, 3)
    else:
        assert result.channel_maps is None


def test_channels_reduce_as_each_method_literature_does(colour):
    model, x, _ = colour
    by_max = saliency(model, x[:3])  # Simonyan et al.: the largest |gradient| over channels
    np.testing.assert_allclose(by_max.maps, np.abs(by_max.channel_maps).max(axis=-1))
    summed = integrated_gradients(model, x[:3])  # additive: the sum, so completeness holds
    np.testing.assert_allclose(summed.maps, summed.channel_maps.sum(axis=-1), rtol=1e-5)
    smooth = explain(model, x[:3], "smoothgrad", samples=4)  # SmoothGrad: sum of |gradient|
    np.testing.assert_allclose(smooth.maps, np.abs(smooth.channel_maps).sum(axis=-1), rtol=1e-5)


def test_grey_maps_are_unchanged_by_the_channel_rules(trained, panel):
    grads = saliency(trained.model, panel[:2])
    np.testing.assert_array_equal(grads.maps, grads.channel_maps[..., 0])  # signed, as before
    assert (grads.maps < 0).any()


def test_integrated_gradients_completeness_holds_on_colour(colour):
    model, x, _ = colour
    result = integrated_gradients(model, x[:8], steps=128)
    np.testing.assert_allclose(
        result.maps.sum(axis=(1, 2)), result.attribution_sum, rtol=1e-4, atol=1e-4
    )
    assert np.median(result.completeness_gap) < 0.05


def test_occlusion_window_follows_the_image_size(colour):
    assert occlusion_window(28, 28) == (4, 2)  # the digits keep their window
    assert occlusion_window(16, 16) == (2, 1)
    assert occlusion_window(8, 8) == (1, 1)
    assert occlusion_window(64, 48) == (7, 3)
    model, x, _ = colour
    assert explain(model, x[:1], "occlusion").params["window"] == 2
    assert explain(model, x[:1], "occlusion", window=3, stride=3).params["window"] == 3


def test_images_of_another_shape_than_the_model_takes_are_one_line_errors(colour, panel):
    model, x, _ = colour
    with pytest.raises(ImageError, match=r"images are 16x16x1 .* takes 16x16x3"):
        saliency(model, x[:2, ..., 0])  # grey images for a colour model
    with pytest.raises(ImageError, match=r"images are 28x28x1"):
        explain(model, panel[:1], "integrated_gradients")


def test_deletion_curves_and_the_sanity_check_work_on_colour(colour):
    model, x, _ = colour
    methods = ("saliency", "integrated_gradients", "grad_cam", "occlusion")
    report = quality_report(model, x[:6], methods=methods, steps=8)
    for method in methods:
        numbers = report.sections[method]
        assert 0.0 <= numbers["deletion_auc_zero"] <= 1.0
        assert 0.0 <= numbers["insertion_auc_blur"] <= 1.0
        for layer in report.layers:
            assert np.isfinite(numbers[randomization_spearman(layer)])
    assert report.layers == ("logits", "conv2", "conv1")
    assert report.sections["integrated_gradients"][COMPLETENESS_GAP_MEDIAN] < 0.2
    assert "sobel" in report.sections and "random" in report.sections
    curves = attribution_curves(model, x[:3], saliency(model, x[:3]), "absolute", steps=4)
    assert curves.deletion.shape == (3, 5) and curves.insertion.shape == (3, 5)


def test_sobel_takes_the_strongest_channel_edge():
    grey = np.zeros((1, 8, 8), np.float32)
    grey[:, :, 4:] = 1.0
    colour = np.zeros((1, 8, 8, 3), np.float32)
    colour[:, :, 4:, 0] = 1.0  # a red-black edge only in the red channel
    np.testing.assert_array_equal(sobel_magnitude(grey), sobel_magnitude(colour))
    np.testing.assert_array_equal(sobel_magnitude(grey), sobel_magnitude(grey[..., None]))


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_overlay_is_drawn_on_the_rgb_image(scale):
    image = np.zeros((4, 4, 3), np.float32)
    image[..., 0] = 1.0  # a red picture
    image[0, 0] = 0.0
    values = np.zeros((4, 4), np.float32)
    values[3, 3] = 1.0
    pixels = _png(overlay_png(image * scale, values, dim=1.0, scale=1))
    assert tuple(pixels[1, 1]) == (255, 0, 0)  # no attribution: the image's own colour
    assert tuple(pixels[0, 0]) == (0, 0, 0)
    assert tuple(pixels[3, 3]) != (255, 0, 0)  # the map's colour on top
    grey = _png(overlay_png(image[..., 0], values, dim=1.0, scale=1))
    assert tuple(grey[1, 1]) == (255, 255, 255)


def test_overlay_of_a_map_on_an_image_of_another_size_is_a_clear_error():
    with pytest.raises(ValueError, match=r"cannot draw a \(4, 4\) map over an image"):
        overlay_png(np.zeros((5, 5, 3)), np.zeros((4, 4)))


def test_panel_figure_shows_colour_inputs(colour, tmp_path):
    model, x, _ = colour
    figure = panel_figure(x[:2], [explain(model, x[:2], m) for m in ("saliency", "occlusion")])
    assert len(figure.axes) == 2 * 3


def test_small_grey_model_every_method_and_curves(small_grey):
    model, x = small_grey
    for method in PER_CHANNEL + PER_PIXEL:
        result = explain(model, x[:3], method)
        assert result.maps.shape == (3, 8, 8) and np.isfinite(result.maps).all(), method
    assert explain(model, x[:1], "occlusion").params["window"] == 1
    report = quality_report(model, x[:4], methods=("saliency", "grad_cam"), steps=4)
    assert np.isfinite(report.sections["saliency"]["deletion_auc_zero"])


def test_explain_file_reads_a_colour_file_in_the_models_size(colour, tmp_path: Path):
    model, x, _ = colour
    big = np.kron(np.round(x[0] * 255).astype(np.uint8), np.ones((2, 2, 1), np.uint8))
    Image.fromarray(big).save(tmp_path / "shape.png")
    task = model_task(model)
    assert task.input_shape == (16, 16, 3) and not task.digit_like
    result = explain_file(model, tmp_path / "shape.png", ["saliency", "occlusion"], tmp_path)
    assert result.preprocessing == ("resized: 32x32 to 16x16",)
    assert result.class_name == str(result.label)
    overlay = _png((tmp_path / "shape_saliency.png").read_bytes())
    assert overlay.shape == (16 * 8, 16 * 8, 3)
