"""Row 4 of "What survives what": the disk fills up while a run logs its artifacts.

The store's artifact folder is a 256 KB tmpfs (we run as root in CI; elsewhere the test skips
and says why, and under ``CI=true`` it fails instead): the run's figures and model do not
fit. ``clearsight train`` must fail with one line, register nothing, leave no run RUNNING,
and the store must stay readable.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from clearsight.errors import RegistryError
from clearsight.tracking import store as tracking
from clearsight.tracking.registry import registry_state
from tests.faults.conftest import Store, clearsight, make_store, skip_or_fail

pytestmark = pytest.mark.slow


@pytest.fixture
def full_store(tmp_path: Path, digits) -> Iterator[Store]:
    if os.geteuid() != 0:
        skip_or_fail("mounting a size-limited tmpfs needs root")
    store = make_store(tmp_path)
    tracking.configure(store.settings)  # the database and experiment, on the real disk
    artifacts = tmp_path / "mlflow" / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(artifacts)]
    done = subprocess.run(mount, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        skip_or_fail(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    images, labels = digits
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=images, y_train=labels, x_test=images[:0], y_test=labels[:0])
    store.env.update(
        {
            "CLEARSIGHT_DATA__SOURCE": "npz",
            "CLEARSIGHT_DATA__PATH": str(npz),
            "CLEARSIGHT_TRACKING__LOG_EXPLANATIONS": "false",
        }
    )
    try:
        yield store
    finally:
        subprocess.run(["umount", "-l", str(artifacts)], check=False)


def test_disk_full_fails_in_one_line_and_registers_nothing(full_store: Store) -> None:
    result = clearsight("train", "--epochs", "1", env=full_store.env, timeout=600)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "No space left on device" in errors[0], errors[0]

    # The store is still readable, holds the failed run, and no version at all.
    client = MlflowClient(tracking.tracking_uri(full_store.settings))
    experiment = client.get_experiment_by_name(full_store.settings.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id])
    assert [run.info.status for run in runs] == ["FAILED"]
    assert client.search_model_versions("") == []
    with pytest.raises(RegistryError, match="does not exist yet"):  # what `models` would say
        registry_state(full_store.settings)
