"""Row 2 of "What survives what", end to end: a whole retrain flow whose tracking server dies.

``clearsight retrain --epochs 1`` (the Prefect flow, on its temporary API) runs against a real
``mlflow server``. The moment the flow's training run appears in the store, the server is
killed (SIGKILL, the whole process group). Once the training step has failed on it (Prefect
logs that it will retry the step in 30 s), another ``mlflow server`` process on the same
store answers at the same address, as after a restart or a redeploy. That one is started
beforehand, behind a TCP forwarder (``Forwarder``), because an mlflow server takes 15-85 s to
start on a busy 2-core machine: the restart must not race the step's retry. The flow must
complete, and the registry must be consistent: ``champion`` names an existing version,
``challenger`` (if set) a version whose run FINISHED, and every registered version has a
FINISHED run (no orphan from the attempt that died).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from clearsight.choices import CHALLENGER, CHAMPION
from clearsight.tracking import store as tracking
from clearsight.tracking.registry import registry_state
from tests.faults.conftest import (
    REPO,
    Forwarder,
    Store,
    free_port,
    register_untrained,
    set_history,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.slow

RUN_WAIT_S = 300  # the temporary Prefect API, the data gate and the run's start, on 2 cores
RETRY_WAIT_S = 300  # the rest of the fit, MLflow's capped HTTP retries, the run's cleanup
RETRY_LINE = "Retry 1/1 will start"  # Prefect's log line for a failed task it will retry


class Output:
    """A child's merged stdout and stderr, read on a thread so the test can watch it."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def tail(self) -> str:
        return self.text()[-4000:]


def wait_for_run(client: MlflowClient, store: Store, known: set[str], flow, output) -> str:
    experiment = client.get_experiment_by_name(store.settings.tracking.experiment)
    deadline = time.monotonic() + RUN_WAIT_S
    while time.monotonic() < deadline:
        assert flow.poll() is None, output.tail()
        runs = client.search_runs([experiment.experiment_id])
        new = [run.info.run_id for run in runs if run.info.run_id not in known]
        if new:
            return new[0]
        time.sleep(0.2)
    pytest.fail(f"the flow's run did not appear in {RUN_WAIT_S} s:\n{output.tail()}")


@pytest.mark.timeout(1500)
def test_a_retrain_survives_its_tracking_server_dying_mid_run(
    server_store: tuple[Store, int], digits, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, port = server_store
    images, labels = digits
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=images, y_train=labels, x_test=images[:0], y_test=labels[:0])
    store.env.update(
        {
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
            "BENTOML_HOME": str(tmp_path / "bentoml"),
            "CLEARSIGHT_TRACKING__LOG_EXPLANATIONS": "false",
            "CLEARSIGHT_DATA__SOURCE": "npz",
            "CLEARSIGHT_DATA__PATH": str(npz),
        }
    )
    server = start_server(store.root, port)
    proxy = Forwarder(port)  # this test and the flow reach the server only through it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", proxy.url)
    store.env["MLFLOW_TRACKING_URI"] = proxy.url
    replacement, flow = None, None
    try:
        tracking.configure(store.settings)
        client = MlflowClient()
        set_history(store.settings, [register_untrained(store.settings, seed=7)])  # champion v1
        experiment = client.get_experiment_by_name(store.settings.tracking.experiment)
        known = {run.info.run_id for run in client.search_runs([experiment.experiment_id])}
        spare = free_port()
        replacement = start_server(store.root, spare)  # idle until the outage ends

        flow = subprocess.Popen(
            [sys.executable, "-m", "clearsight", "retrain", "--epochs", "1"],
            env=store.env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        output = Output(flow)
        died = wait_for_run(client, store, known, flow, output)
        proxy.upstream = None  # from now on a connection is refused ...
        stop_server(server, signal.SIGKILL)  # ... and those in flight die: mid-run
        down = time.monotonic()
        while RETRY_LINE not in output.text():  # until the training step failed on it
            if flow.poll() is not None or time.monotonic() - down > RETRY_WAIT_S:
                pytest.fail(f"no retry of the failed step was scheduled:\n{output.tail()}")
            time.sleep(0.5)
        proxy.upstream = spare  # the server is back, same store, same address
        print(f"\nmlflow server down for {time.monotonic() - down:.1f} s")
        flow.wait(timeout=900)
        text = output.text()
        assert flow.returncode == 0, text[-5000:]
        assert "Traceback" not in text, text[-5000:]

        # The registry: exactly one new version, from a complete run; aliases name real ones.
        versions = {mv.version: mv for mv in client.search_model_versions("name='clearsight-cnn'")}
        assert sorted(versions, key=int) == ["1", "2"], sorted(versions)
        for version, mv in versions.items():
            status = client.get_run(mv.run_id).info.status
            assert status == "FINISHED", f"v{version} is an orphan: its run is {status}"
        state = registry_state(store.settings)
        assert state[CHAMPION] in versions, state
        if state[CHALLENGER] is not None:
            run_id = versions[state[CHALLENGER]].run_id
            assert client.get_run(run_id).info.status == "FINISHED", state
        # The attempt that lost its server registered nothing and did not finish.
        assert client.search_model_versions(f"run_id = '{died}'") == []
        assert client.get_run(died).info.status in {"FAILED", "RUNNING"}
        assert versions["2"].run_id != died
    finally:
        if flow is not None and flow.poll() is None:
            flow.kill()
            flow.wait(timeout=60)
        proxy.close()
        stop_server(server)
        if replacement is not None:
            stop_server(replacement)
