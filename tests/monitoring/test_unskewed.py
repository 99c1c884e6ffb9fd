"""Callers cannot skew the monitor: what the traffic log keeps of an answered image does not
depend on the explanations its request asked for, and the monitor explains every logged image
with the model of the version that served it, with fixed parameters. Fast: untrained CNNs,
no MLflow (the registry side is in ``test_attribution_drift.py``)."""

from __future__ import annotations

from pathlib import Path

import anyio
import keras
import numpy as np
import pytest

from clearsight.inference.predictor import Predictor
from clearsight.inference.provenance import Provenance
from clearsight.inference.schemas import PredictRequest
from clearsight.model.cnn import build_cnn
from clearsight.monitoring.check import served_attributions, serving_keys
from clearsight.monitoring.features import ATTRIBUTION_FEATURES, integrated_gradients_features
from clearsight.monitoring.requests import RequestMonitor, default_bounds
from clearsight.monitoring.traffic import TrafficLog, chunks, read_window
from clearsight.pipelines.monitor import VersionReference
from clearsight.pipelines.serving_models import serving_models

# Per request: differ only in what the caller asked to be explained, and how.
EXPLAIN_OPTIONS: list[bool | dict] = [
    False,
    {"methods": ["integrated_gradients"]},  # the predicted class, default steps
    {
        "methods": ["integrated_gradients"],
        "parameters": {"integrated_gradients": {"steps": 2}},
    },
    {
        "methods": ["integrated_gradients", "saliency"],
        "targets": "explicit",
        "classes": [3, 7],
        "parameters": {"integrated_gradients": {"steps": 64}},
    },
    {"methods": ["integrated_gradients"], "targets": "top-k", "k": 3},
]


def untrained(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return build_cnn()


def test_a_callers_explanation_options_do_not_change_what_is_logged(tmp_path: Path, digits):
    """The same image asked with five different explanation options (none; integrated
    gradients with 2, 32 and 64 steps; the predicted, explicit and top-k targets) leaves five
    identical records, apart from the request id and the time."""
    predictor = Predictor(untrained(0), Provenance("clearsight", "5", run_id="run-5"), "m:t")
    log = TrafficLog(tmp_path, sample_rate=1.0, max_records=100)
    predictor.monitor = RequestMonitor(default_bounds(), log, "5", run_id="run-5")
    image = {"kind": "array", "scale": "0-255", "data": digits[0][7].tolist()}

    async def forward(x: np.ndarray) -> np.ndarray:
        return predictor.forward(x)

    async def send_all() -> list[str]:
        ids = []
        for options in EXPLAIN_OPTIONS:
            request = PredictRequest.model_validate({"images": [image], "explain": options})
            response = await predictor.predict(request, forward)
            assert response.results[0].status in ("ok", "degraded")
            ids.append(response.request_id)
        return ids

    ids = anyio.run(send_all)
    log.flush()
    columns: dict[str, list[np.ndarray]] = {}
    for path in chunks(tmp_path):
        with np.load(path) as data:
            for key in data.files:
                columns.setdefault(key, []).append(data[key])
    logged = {key: np.concatenate(parts) for key, parts in columns.items()}
    assert list(logged["request_ids"]) == ids
    assert not [key for key in logged if "attribution" in key]
    for key, values in logged.items():
        if key in ("request_ids", "times"):
            continue
        for row in range(1, len(ids)):
            np.testing.assert_array_equal(values[row], values[0], err_msg=key)
    assert logged["run_ids"][0] == "run-5" and logged["model_versions"][0] == "5"


def test_each_record_is_explained_with_the_model_that_served_it(tmp_path: Path, digits):
    """Three versions served the same six digits; the monitor has models for two of them.
    Each version's records get that model's summaries; the third version's are NaN (left out
    of the attribution tests by ``compare``)."""
    images = digits[0][::67][:6].astype(np.float32)[..., None] / 255.0
    served = {("1", "run-a"): untrained(1), ("2", "run-b"): untrained(2), ("3", "run-c"): None}
    log = TrafficLog(tmp_path, sample_rate=1.0, max_records=100)
    for (version, run_id), model in served.items():
        monitor = RequestMonitor(default_bounds(), log, version, run_id=run_id)
        probabilities = np.full((len(images), 10), 0.1) if model is None else model(images)
        monitor.review(images, np.asarray(probabilities), f"request-{version}")
    log.flush()
    window = read_window(tmp_path)
    groups = serving_keys(window)
    assert [(key, int(rows.sum())) for key, rows in groups.items()] == [
        (key, len(images)) for key in served
    ]
    values = served_attributions(window, {k: m for k, m in served.items() if m is not None})
    expected = {
        key: integrated_gradients_features(model, window.pixels[groups[key]])
        for key, model in served.items()
        if model is not None
    }
    for name in ATTRIBUTION_FEATURES:
        for key, want in expected.items():
            np.testing.assert_allclose(values[name][groups[key]], want[name], err_msg=name)
        assert np.isnan(values[name][groups[("3", "run-c")]]).all()
    # The two models' summaries differ on the same pixels: the test above can tell them apart.
    a, b = expected[("1", "run-a")], expected[("2", "run-b")]
    assert not np.allclose(a["ig_centroid_dx"], b["ig_centroid_dx"])


def test_the_reference_and_the_monitor_use_the_fixed_parameters(monkeypatch, digits):
    """Summaries are made with ``MONITOR_IG`` whatever the explain defaults are."""
    import clearsight.explain

    seen = []
    real = clearsight.explain.explain

    def spy(model, x, method, targets, **params):
        seen.append((method, targets, params))
        return real(model, x, method, targets, **params)

    monkeypatch.setattr(clearsight.explain, "explain", spy)
    integrated_gradients_features(untrained(3), digits[0][:2].astype(np.float32) / 255.0)
    assert seen == [
        (
            "integrated_gradients",
            "predicted",
            {"steps": 32, "baseline": "black", "rule": "trapezoid", "output": "logits"},
        )
    ]


@pytest.mark.parametrize("version", ["", "bento"])
def test_a_record_without_a_registry_version_is_left_out_with_a_note(
    tmp_path: Path, settings, version: str
) -> None:
    log = TrafficLog(tmp_path, sample_rate=1.0, max_records=10)
    x = np.zeros((2, 28, 28, 1), np.float32)
    RequestMonitor(default_bounds(), log, version).review(x, np.eye(10)[:2], "r")
    log.flush()
    champion = VersionReference("1", "run-1", {}, None, object())  # type: ignore[arg-type]
    served = serving_models(settings, read_window(tmp_path), champion)
    assert served.models == {}
    assert served.notes == [
        f"2 record(s) served by v{version or '?'} left out of the attribution tests: "
        f"'{version}' is not a registry version"
    ]


def test_the_champion_already_loaded_explains_its_own_records(tmp_path: Path, settings):
    """No registry call for the champion's records (the store here is empty: a call would
    fail), whether they name its run or were logged before run ids were."""
    log = TrafficLog(tmp_path, sample_rate=1.0, max_records=10)
    x = np.zeros((1, 28, 28, 1), np.float32)
    RequestMonitor(default_bounds(), log, "1", run_id="run-1").review(x, np.eye(10)[:1], "a")
    RequestMonitor(default_bounds(), log, "1").review(x, np.eye(10)[:1], "b")
    log.flush()
    model = object()
    champion = VersionReference("1", "run-1", {}, None, model)  # type: ignore[arg-type]
    served = serving_models(settings, read_window(tmp_path), champion)
    assert served.models == {("1", "run-1"): model, ("1", ""): model}
    assert served.notes == []
