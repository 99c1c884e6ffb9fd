"""Run in a child process with KERAS_BACKEND set: load a saved model, write maps as .npy.

The Keras backend is fixed per process, so comparing backends needs one process each:
``python backend_child.py FOLDER`` reads FOLDER/m.keras and FOLDER/x.npy and writes
FOLDER/<backend>_<method>.npy for every gradient method.
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np

from clearsight.explain import activations, explain

METHODS = ("saliency", "integrated_gradients", "smoothgrad", "grad_cam", "occlusion")


def main(folder: Path) -> None:
    model = keras.saving.load_model(folder / "m.keras")
    x = np.load(folder / "x.npy")
    backend = keras.backend.backend()
    for method in METHODS:
        np.save(folder / f"{backend}_{method}.npy", explain(model, x, method).maps)
    np.savez(folder / f"{backend}_activations.npz", **activations(model, x))
    shap_maps = explain(model, x, "shap", max_evals=200).maps  # Partition off TensorFlow
    np.save(folder / f"{backend}_shap.npy", shap_maps)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
