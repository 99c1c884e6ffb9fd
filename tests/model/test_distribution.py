"""Data-parallel training (Keras DataParallel, JAX backend) matches single-device training.

Two virtual CPU devices stand in for two accelerators: ``XLA_FLAGS`` must be set before JAX
is imported, so the training runs in a child process (``distribution_child.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clearsight.config import TrainSettings
from clearsight.errors import TrainingError
from clearsight.model.devices import data_parallel, distribution_name

CHILD = Path(__file__).with_name("distribution_child.py")


@pytest.mark.slow
def test_data_parallel_on_two_devices_matches_one_device(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    env = os.environ | {
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    done = subprocess.run(
        [sys.executable, str(CHILD), str(out), "600"],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["devices"] == ["cpu:0", "cpu:1"] or len(result["devices"]) == 2
    single, parallel = result["off"], result["data_parallel"]
    assert single["distribution"] == "off" and single["kernel_devices"] == 1
    # The weights really live on both devices, and the batches were split over them.
    assert parallel["distribution"] == "data_parallel:2" and parallel["kernel_devices"] == 2
    np.testing.assert_allclose(parallel["val_loss"], single["val_loss"], rtol=1e-4)
    for a, b in zip(parallel["weights"], single["weights"], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_allclose(parallel["probs"], single["probs"], atol=1e-4)
    # Two epochs on 600 digits learn something: the comparison is not between two blank models.
    assert result["accuracy"]["data_parallel"] > 0.6


def test_distribution_setting_resolves_per_backend() -> None:
    assert TrainSettings().distribution == "auto"
    assert data_parallel("off", "jax") is None
    assert data_parallel("auto", "tensorflow") is None
    with pytest.raises(TrainingError, match="needs the JAX backend"):
        data_parallel("data_parallel", "tensorflow")
    assert distribution_name(None) == "off"
