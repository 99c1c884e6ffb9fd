"""Drift features and bounds per channel (issue #23.3): a tiny 16x16 colour model's reference,
traffic and drift test; grey names unchanged; references and bounds of another kind of image
refused with one line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import keras
import numpy as np
import pytest

from clearsight.errors import MonitorError
from clearsight.monitoring.check import figure_png, served_attributions
from clearsight.monitoring.drift import compare
from clearsight.monitoring.features import (
    INPUT_FEATURES,
    image_features,
    input_feature_names,
    integrated_gradients_features,
)
from clearsight.monitoring.reference import Reference, compute_reference
from clearsight.monitoring.requests import RequestMonitor, default_bounds
from clearsight.monitoring.traffic import TrafficLog, chunks, read_window
from clearsight.task import DIGITS, ImageTask
from tests.explain.tiny import colour_model


@pytest.fixture(scope="module")
def colour() -> tuple[keras.Model, np.ndarray, Reference]:
    model, x, _ = colour_model()
    reference = compute_reference(model, x[:30], x[30:45], "test: colour", attribution_sample=15)
    return model, x, reference


def test_colour_features_are_per_channel_and_grey_names_unchanged():
    assert input_feature_names(1) == INPUT_FEATURES
    names = input_feature_names(3)
    assert len(names) == 18 and names[:3] == (
        "mean_intensity_r",
        "mean_intensity_g",
        "mean_intensity_b",
    )
    red = np.zeros((2, 10, 12, 3))
    red[:, 2:6, 3:9, 0] = 1.0  # a red block, off-centre, on black
    features = image_features(red)
    assert tuple(features) == names
    assert features["ink_fraction_r"][0] == pytest.approx(24 / 120)
    assert features["ink_fraction_g"][0] == 0.0 and features["mean_intensity_b"][0] == 0.0
    assert features["ink_height_r"][0] == 4 and features["ink_width_r"][0] == 6
    assert features["centroid_dx_r"][0] == pytest.approx(5.5 - 5.5)  # own centre: (12 - 1) / 2
    assert features["centroid_dy_r"][0] == pytest.approx(3.5 - 4.5)
    grey = red[..., 0]
    assert tuple(image_features(grey)) == INPUT_FEATURES
    for name in INPUT_FEATURES:
        np.testing.assert_array_equal(image_features(grey)[name], features[f"{name}_r"])
        np.testing.assert_array_equal(image_features(grey[..., None])[name], features[f"{name}_r"])


def test_colour_reference_stores_its_feature_names_and_classes(colour, tmp_path: Path):
    _, _, reference = colour
    assert reference.feature_names == input_feature_names(3)
    assert reference.n_classes == 3 and len(reference.class_prior) == 3
    assert reference.bounds.features == input_feature_names(3)
    loaded = Reference.load(reference.save(tmp_path / "reference.npz"))
    assert loaded.feature_names == reference.feature_names and loaded.n_classes == 3
    assert loaded.bounds == reference.bounds
    assert set(loaded.attributions) == set(reference.attributions)


def test_a_reference_written_before_names_were_stored_reads_as_grey_digits(tmp_path: Path):
    features = {name: np.linspace(0, 1, 30) for name in INPUT_FEATURES}
    arrays = {f"feature_{k}": v for k, v in features.items()}
    arrays |= {f"attribution_ig_{k}": np.zeros(5) for k in ("centroid_dx", "centroid_dy")}
    arrays |= {f"attribution_ig_{k}": np.zeros(5) for k in ("spread", "ink_share")}
    meta = {"bounds": {"source": "old", "limits": {"ink_fraction": [0, 1]}}, "source": "old"}
    path = tmp_path / "old.npz"
    np.savez(path, predicted=np.arange(5), confidences=np.ones(5), meta=json.dumps(meta), **arrays)
    old = Reference.load(path)
    assert old.feature_names == INPUT_FEATURES and old.n_classes == DIGITS.n_classes


def test_bounds_for_another_kind_of_image_are_refused_with_one_line(colour):
    _, x, reference = colour
    colour_features = image_features(x[:3])
    with pytest.raises(MonitorError, match=r"bounds from embedded MNIST .* another image shape"):
        default_bounds().check(colour_features)
    assert not default_bounds().fits(colour_features)
    assert reference.bounds.fits(colour_features)
    with pytest.raises(MonitorError, match="missing mean_intensity_r"):
        reference.bounds.check(image_features(x[:3, ..., 0]))


def test_default_bounds_ship_only_for_28x28_grey_digits():
    shipped = default_bounds()
    assert shipped.features == INPUT_FEATURES and default_bounds(task=DIGITS) == shipped
    assert default_bounds(1) == shipped
    for empty in (
        default_bounds(3),
        default_bounds(task=ImageTask(8, 8, 1, DIGITS.class_names, digit_like=True)),
        default_bounds(task=ImageTask(28, 28, 1, ("a", "b"), digit_like=False)),
        default_bounds(task=ImageTask(16, 16, 3, ("a", "b", "c"), digit_like=False)),
    ):
        assert empty.limits == {} and empty.source.startswith("none")
        assert empty.check(image_features(np.zeros((2, 8, 8, 3)))) == [[], []]


def test_drift_on_colour_traffic_and_refusal_of_another_shape(colour):
    model, x, reference = colour
    window = x[:40]  # training-like images: no drift expected
    p = np.asarray(model(window, training=False))
    attributions = integrated_gradients_features(model, window)
    report = compare(reference, image_features(window), p.argmax(1), p.max(1), attributions)
    inputs = [t.name for t in report.tests if t.kind == "input"]
    assert inputs == list(input_feature_names(3))
    assert {t.name for t in report.tests} >= {"class_prior", "confidence", "ig_spread"}
    grey = image_features(window[..., 0])
    with pytest.raises(MonitorError, match="traffic of another image shape"):
        compare(reference, grey, p.argmax(1), p.max(1))
    with pytest.raises(MonitorError, match="reference's model has 3 classes"):
        compare(reference, image_features(window), np.full(40, 7), p.max(1))
    assert figure_png(reference, image_features(window), attributions, report)[:4] == b"\x89PNG"


def test_colour_traffic_is_logged_per_channel_and_explained_by_its_model(
    colour, tmp_path: Path, caplog
):
    model, x, _ = colour
    log = TrafficLog(tmp_path, sample_rate=1.0, max_records=1000)
    grey_monitor = RequestMonitor(default_bounds(), log, "1", run_id="grey")
    grey_monitor.review(np.random.default_rng(0).random((3, 28, 28, 1)), np.eye(10)[:3], "g")
    log.flush()
    monitor = RequestMonitor(default_bounds(), log, "2", run_id="colour")  # unfit bounds
    with caplog.at_level(logging.ERROR):
        for i in range(3):
            p = np.asarray(model(x[i * 8 : (i + 1) * 8], training=False))
            assert monitor.review(x[i * 8 : (i + 1) * 8], p, f"c{i}") == [[]] * 8
        log.flush()
    assert sum("checks off" in r.message for r in caplog.records) == 1  # said once
    assert len(chunks(tmp_path)) >= 2
    window = read_window(tmp_path)  # the newest kind only: the grey chunk is left out
    assert len(window) == 24 and window.pixels.shape == (24, 16, 16, 3)
    assert tuple(window.features) == input_feature_names(3)
    np.testing.assert_allclose(window.pixels, x[:24], atol=1 / 255)
    summaries = served_attributions(window, {("2", "colour"): model})
    assert np.isfinite(summaries["ig_spread"]).all()


def test_a_batch_mixing_kinds_is_written_as_one_chunk_per_kind(colour, tmp_path: Path):
    _, x, _ = colour
    log = TrafficLog(tmp_path, sample_rate=1.0, max_records=1000)
    RequestMonitor(default_bounds(3), log, "2").review(x[:2], np.eye(3)[:2], "c")
    RequestMonitor(default_bounds(), log, "1").review(np.zeros((2, 28, 28, 1)), np.eye(10)[:2], "g")
    log.flush()
    assert len(chunks(tmp_path)) == 2 and log.dropped == 0
    assert read_window(tmp_path).pixels.shape[1:] == (28, 28)
