"""Run in a child process with KERAS_BACKEND=jax and two virtual CPU devices (XLA_FLAGS set by
the parent before JAX is imported): train the same seeded model with and without Keras'
DataParallel, write what the parent compares as JSON.

    python tests/model/distribution_child.py OUT.json N_TRAIN
"""

from __future__ import annotations

import json
import sys

import jax
import keras
import numpy as np

from clearsight.config import TrainSettings
from clearsight.data.sources import load_embedded
from clearsight.digits import to_model_input
from clearsight.model.fitting import train


def main(out: str, n_train: int) -> None:
    data = load_embedded()
    order = np.random.default_rng(0).permutation(len(data.labels))  # the source is class-sorted
    x, y = data.images[order], data.labels[order]
    x_train, y_train = x[:n_train], y[:n_train]
    x_val, y_val = x[n_train : n_train + 200], y[n_train : n_train + 200]
    probe = to_model_input(x[-300:])
    results = {}
    for setting in ("off", "data_parallel"):
        settings = TrainSettings(
            epochs=2, batch_size=64, patience=2, seed=3, distribution=setting, augment=True
        )
        result = train(x_train, y_train, x_val, y_val, settings, verbose=0)
        kernel = result.model.get_layer("conv1").kernel.value
        results[setting] = {
            "distribution": result.fit_params["distribution"],
            "kernel_devices": len(kernel.sharding.device_set),
            "probs": keras.ops.convert_to_numpy(result.model(probe)).tolist(),
            "weights": [w.ravel().tolist() for w in result.model.get_weights()],
            "val_loss": result.history["val_loss"],
        }
    results["devices"] = [str(d) for d in jax.devices()]
    results["accuracy"] = {
        k: float((np.asarray(v["probs"]).argmax(1) == y[-300:]).mean())
        for k, v in results.items()
        if k != "devices"
    }
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
