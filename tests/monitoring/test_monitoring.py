"""Features, per-image bounds, the drift tests: quiet on held-out digits, loud on shifts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clearsight.data.profile import INK_THRESHOLD
from clearsight.monitoring import features as F
from clearsight.monitoring.drift import compare
from clearsight.monitoring.reference import Reference
from clearsight.monitoring.requests import default_bounds, embedded_bounds
from clearsight.monitoring.shifts import SHIFTS

from .conftest import Monitored, sliced

WINDOW = 50
slow = pytest.mark.slow


def test_features_of_a_known_image() -> None:
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 4:10, 20:23] = 1.0  # a 6 x 3 bar, up and right of the centre
    f = F.image_features(image)
    assert f["ink_height"][0] == 6 and f["ink_width"][0] == 3
    assert f["ink_fraction"][0] == pytest.approx(18 / 784)
    assert f["mean_intensity"][0] == pytest.approx(255 * 18 / 784)
    assert f["centroid_dx"][0] == pytest.approx(21 - 13.5)
    assert f["centroid_dy"][0] == pytest.approx(6.5 - 13.5)
    empty = F.image_features(np.zeros((1, 28, 28)))
    assert empty["ink_height"][0] == 0 and empty["centroid_dx"][0] == 0


def test_attribution_summary_of_a_known_map() -> None:
    image = np.zeros((1, 28, 28))
    image[0, 10:18, 10:18] = 1.0
    m = np.zeros((1, 28, 28))
    m[0, 12, 12] = 3.0  # on the ink
    m[0, 0, 0] = 1.0  # off the ink
    m[0, 20, 20] = -5.0  # negative evidence does not count
    a = F.attribution_features(m, image)
    assert a["ig_ink_share"][0] == pytest.approx(0.75)
    assert a["ig_centroid_dx"][0] == pytest.approx(9 - 13.5)  # (3*12 + 0) / 4 = 9
    assert a["ig_spread"][0] > 0


def test_ink_level_is_the_data_contracts() -> None:
    assert F.INK_LEVEL == INK_THRESHOLD / 255.0


def test_shipped_default_bounds_are_the_embedded_digits() -> None:
    shipped, recomputed = default_bounds(), embedded_bounds()
    assert shipped.limits.keys() == recomputed.limits.keys()
    for name, (low, high) in recomputed.limits.items():
        assert shipped.limits[name] == pytest.approx((low, high)), name


@slow  # a trained model (session fixture, ~30 s)
def test_reference_round_trips(monitored: Monitored, tmp_path: Path) -> None:
    path = monitored.reference.save(tmp_path / "monitoring" / "reference.npz")
    loaded = Reference.load(path)
    assert loaded.bounds == monitored.reference.bounds
    np.testing.assert_array_equal(loaded.predicted, monitored.reference.predicted)
    assert list(tmp_path.joinpath("monitoring").iterdir()) == [path]  # no temporary left


@slow  # a trained model (session fixture, ~30 s)
def test_bounds_pass_held_out_digits_and_flag_shifted_ones(monitored: Monitored) -> None:
    bounds = monitored.reference.bounds
    clean = bounds.check(F.image_features(monitored.pool))
    assert np.mean([bool(c) for c in clean]) < 0.03
    rng = np.random.default_rng(1)
    for name in ("inverted", "shifted", "thick"):
        shifted = SHIFTS[name](monitored.pool[:100], rng)
        flagged = np.mean([bool(c) for c in bounds.check(F.image_features(shifted))])
        assert flagged > 0.9, (name, flagged)


@slow  # a trained model (session fixture, ~30 s)
def test_held_out_digits_raise_no_drift_in_20_windows(monitored: Monitored) -> None:
    """The false-alarm rate: 20 disjoint windows of held-out digits, every test on."""
    alarms = []
    for i in range(20):
        w = sliced(monitored.pool_window, i * WINDOW, (i + 1) * WINDOW)
        report = compare(monitored.reference, w.features, w.labels, w.confidences, w.attributions)
        if report.drifted:
            alarms.append(report.reasons)
    assert len(alarms) <= 1, alarms  # alpha 0.01 per window: 0.2 expected


@slow
@pytest.mark.parametrize("shift", sorted(SHIFTS))
def test_each_shift_raises_drift(monitored: Monitored, shift: str) -> None:
    rng = np.random.default_rng(2)
    w = monitored.window(SHIFTS[shift](monitored.pool[:WINDOW], rng))
    report = compare(monitored.reference, w.features, w.labels, w.confidences, w.attributions)
    assert report.drifted, report.to_dict()
    assert report.scores()["drift_detected"] == 1.0


@slow  # a trained model (session fixture, ~30 s)
def test_too_small_a_window_is_refused(monitored: Monitored) -> None:
    w = sliced(monitored.pool_window, 0, 5)
    with pytest.raises(ValueError, match="at least"):
        compare(monitored.reference, w.features, w.labels, w.confidences)
