"""Row 1 of "What survives what": the trainer killed mid-fit, by SIGKILL and by SIGTERM.

Real ``clearsight train`` / ``clearsight retrain`` processes on a temporary store (a small
npz of real digits, many epochs so the kill lands mid-fit), killed once an epoch is logged.
Afterwards: no version registered from the killed runs, no run left RUNNING once a later run
started, the champion untouched, the Prefect flow run CRASHED, and the next run works.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from clearsight.tracking import store as tracking
from clearsight.tracking.lifecycle import ENDED_TAG
from clearsight.tracking.registry import registry_state
from tests.conftest import REPO
from tests.faults.conftest import Store, make_store, register_untrained, set_history

pytestmark = pytest.mark.slow

EPOCH_WAIT_S = 240


def small_npz(path: Path, digits) -> Path:
    """400 real digits (40 per class) as a Keras-style ``mnist.npz``."""
    images, labels = digits
    np.savez(path, x_train=images, y_train=labels, x_test=images[:0], y_test=labels[:0])
    return path


def start(store: Store, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "clearsight", *args],
        env=store.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_epoch(store: Store, process: subprocess.Popen, known: set[str]) -> str:
    """The id of the new run once it logged an epoch's loss (while its process still runs)."""
    tracking.configure(store.settings)
    client = MlflowClient()
    deadline = time.monotonic() + EPOCH_WAIT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0][-3000:]
        experiment = client.get_experiment_by_name(store.settings.tracking.experiment)
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        for run in runs:
            if run.info.run_id not in known and client.get_metric_history(run.info.run_id, "loss"):
                return run.info.run_id
        time.sleep(0.5)
    process.kill()
    pytest.fail(f"no epoch logged in {EPOCH_WAIT_S} s:\n{process.communicate()[0][-3000:]}")


def versions_of(store: Store, run_id: str) -> list[str]:
    return [mv.version for mv in MlflowClient().search_model_versions(f"run_id = '{run_id}'")]


def flow_run_states(prefect_home: Path) -> list[tuple[str, str]]:
    """(state type, state name) of every flow run in the temporary Prefect API's database."""
    with sqlite3.connect(prefect_home / "prefect.db") as db:
        return db.execute("select state_type, state_name from flow_run").fetchall()


@pytest.fixture
def store(tmp_path: Path, digits) -> Store:
    store = make_store(tmp_path)
    store.env.update(
        {
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",  # a busy 2-core CI
            "CLEARSIGHT_TRACKING__LOG_EXPLANATIONS": "false",
            "CLEARSIGHT_DATA__SOURCE": "npz",
            "CLEARSIGHT_DATA__PATH": str(small_npz(tmp_path / "mnist.npz", digits)),
            "CLEARSIGHT_TRAIN__PATIENCE": "1000",  # no early stop before the kill
        }
    )
    set_history(store.settings, [register_untrained(store.settings, seed=7)])  # champion v1
    return store


def test_killed_trainers_leave_nothing_half_done(store: Store) -> None:
    tracking.configure(store.settings)
    client = MlflowClient()

    # SIGKILL mid-fit: nothing runs in the process, so its run stays RUNNING for now.
    trainer = start(store, "train", "--epochs", "500")
    killed = wait_for_epoch(store, trainer, set())
    trainer.send_signal(signal.SIGKILL)
    trainer.wait(timeout=60)
    assert client.get_run(killed).info.status == "RUNNING"
    assert versions_of(store, killed) == []

    # SIGTERM mid-fit of the Prefect flow: the flow run crashes, the MLflow run ends KILLED.
    flow = start(store, "retrain", "--epochs", "500")
    terminated = wait_for_epoch(store, flow, {killed})
    flow.send_signal(signal.SIGTERM)
    output = flow.communicate(timeout=120)[0]
    assert flow.returncode == 143, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "terminated (SIGTERM)" in output
    assert client.get_run(terminated).info.status == "KILLED"
    assert versions_of(store, terminated) == []
    assert ("CRASHED", "Crashed") in flow_run_states(Path(store.env["PREFECT_HOME"]))
    # ... and the run the SIGKILL left behind was found by this later run and ended.
    assert client.get_run(killed).info.status == "KILLED"
    assert "process was gone" in client.get_run(killed).data.tags[ENDED_TAG]
    assert registry_state(store.settings)["champion"] == "1"

    # The next run works: a complete run and exactly one new version; the champion stays.
    done = subprocess.run(
        [sys.executable, "-m", "clearsight", "train", "--epochs", "1", "--json"],
        env=store.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    experiment = client.get_run(killed).info.experiment_id
    statuses = [r.info.status for r in client.search_runs([experiment])]
    assert sorted(statuses) == ["FINISHED", "FINISHED", "KILLED", "KILLED"], statuses  # + v1
    state = registry_state(store.settings)
    assert state["champion"] == "1"
    assert sorted(int(mv.version) for mv in client.search_model_versions("")) == [1, 2]
