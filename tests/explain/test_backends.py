"""JAX and PyTorch backends give the same maps as TensorFlow on the same weights.

The Keras backend is fixed per process: the model is saved, and a child process with
KERAS_BACKEND set loads it and writes maps (see ``backend_child.py``).
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from clearsight.explain import activations, explain
from tests.explain.backend_child import METHODS

CHILD = Path(__file__).with_name("backend_child.py")


def _run_child(backend: str, folder: Path) -> None:
    env = {**os.environ, "KERAS_BACKEND": backend}
    done = subprocess.run(
        [sys.executable, str(CHILD), str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow is the reference")
@pytest.mark.parametrize(
    "backend",
    [
        "jax",
        pytest.param(
            "torch",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("torch") is None, reason="PyTorch is not installed"
            ),
        ),
    ],
)
def test_backend_agrees_with_tensorflow(trained, saved_model, backend):
    _run_child(backend, saved_model)
    x = np.load(saved_model / "x.npy")
    for method in METHODS:
        reference = explain(trained.model, x, method).maps
        other = np.load(saved_model / f"{backend}_{method}.npy")
        scale = np.abs(reference).max()
        np.testing.assert_allclose(other, reference, atol=1e-4 * scale, err_msg=method)
    with np.load(saved_model / f"{backend}_activations.npz") as other_layers:
        for name, values in activations(trained.model, x).items():
            np.testing.assert_allclose(other_layers[name], values, atol=1e-4, err_msg=name)
    shap_maps = np.load(saved_model / f"{backend}_shap.npy")
    assert shap_maps.shape == x.shape[:3] and np.abs(shap_maps).max() > 0
