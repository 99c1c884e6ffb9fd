"""The LiteRT forward pass: the Keras model's probabilities, or not used at all.

A tiny seed-architecture CNN (seeded, untrained) is converted in memory; each test compares
with the model's own compiled forward, not with remembered numbers. The fallbacks (a parity
miss, a conversion that fails, another backend) must leave the caller on Keras, with the
reason in the log.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
import pytest

from clearsight.explain import model_gradients
from clearsight.explain.gradients import PROBABILITIES
from clearsight.inference import litert
from clearsight.inference.predictor import Predictor
from clearsight.inference.provenance import Provenance
from clearsight.model.cnn import Architecture, build_cnn

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="LiteRT's converter is TensorFlow's"
)


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(1)
    return build_cnn(arch=Architecture(conv1_filters=4, conv2_filters=4), name="tiny_litert")


def keras_forward(model: keras.Model):
    return lambda x: model_gradients(model).scores(x, PROBABILITIES)


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 28, 28, 1), dtype=np.float32)


def test_the_same_probabilities_for_any_batch_size(model: keras.Model) -> None:
    forward = litert.litert_forward(model, keras_forward(model), images(4))
    assert forward is not None
    for n in (1, 5, 1, 3):  # the interpreter is resized on every change of batch size
        x = images(n, seed=n)
        ours = forward(x)
        assert ours.shape == (n, 10) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, keras_forward(model)(x), atol=litert.PARITY_ATOL)
    first = forward(images(1, seed=9))
    second = forward(images(1, seed=10))
    assert not np.array_equal(first, second)  # answers are copies, not the reused buffer


def test_a_loaded_model_converts_too(model: keras.Model, tmp_path: Path) -> None:
    """What the service converts: a model loaded from its .keras file (a traced function of
    one gave NaNs, which is why ``convert`` goes through ``from_keras_model``)."""
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    forward = litert.litert_forward(loaded, keras_forward(loaded), images(4))
    assert forward is not None
    assert np.isfinite(forward(images(2))).all()


def test_a_parity_miss_keeps_keras(model: keras.Model, caplog: pytest.LogCaptureFixture) -> None:
    def off_by_a_little(x: np.ndarray) -> np.ndarray:
        return keras_forward(model)(x) + 1e-3

    with caplog.at_level(logging.WARNING, logger="clearsight.inference.litert"):
        assert litert.litert_forward(model, off_by_a_little, images(4)) is None
    assert "probabilities differ by 0.001" in caplog.text


def test_a_failed_conversion_keeps_keras(
    model: keras.Model, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fails(_: keras.Model) -> bytes:
        raise OSError("No space left on device\nmore lines")

    monkeypatch.setattr(litert, "convert", fails)
    with caplog.at_level(logging.WARNING, logger="clearsight.inference.litert"):
        assert litert.litert_forward(model, keras_forward(model), images(2)) is None
    assert "OSError: No space left on device" in caplog.text
    assert "more lines" not in caplog.text


def test_other_backends_keep_keras(model: keras.Model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert litert.litert_forward(model, keras_forward(model), images(2)) is None


def test_the_predictor_switches_after_warm_up_only_when_asked(model: keras.Model) -> None:
    provenance = Provenance(name="digits", version="1")
    asked = Predictor(model, provenance, "m:1", litert=True)
    default = Predictor(model, provenance, "m:1")
    x = images(3)
    before = asked.forward(x)  # Keras until warm-up
    asked.warm_up()
    default.warm_up()
    assert isinstance(asked._fast_forward, litert.LiteRTForward)
    assert default._fast_forward is None
    np.testing.assert_allclose(asked.forward(x), before, atol=litert.PARITY_ATOL)
    np.testing.assert_allclose(default.forward(x), before, atol=1e-6)
