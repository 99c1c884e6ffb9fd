"""Row 3 of "What survives what": the registry goes away while the alias moves.

A real ``clearsight serve`` follows ``@champion`` on a real ``mlflow server``. The champion
moves to v2 and, the moment the service starts downloading v2, the server is killed (a TCP
forwarder between the two sees the first artifact request and kills the server before passing
it on): the load fails half-way with a refused connection, exactly as in a registry restart.
The service must keep answering with v1, record no refusal, and once the server is started
again, put v2 live by itself: no ``force``, no reload request.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import keras
import numpy as np
import pytest
from mlflow import MlflowClient

from clearsight.config import TrainSettings
from clearsight.data import Dataset
from clearsight.model.fitting import train
from clearsight.tracking.faults import BOUNDED_HTTP_RETRIES
from tests.faults.conftest import (
    REPO,
    Forwarder,
    Store,
    free_port,
    start_server,
    stop_server,
)
from tests.serving.conftest import READY_TIMEOUT_S, TOKENS, offline_probabilities, stop
from tests.serving.test_live_swap import point_champion, register

pytestmark = pytest.mark.slow

LIVE_DEADLINE_S = 300  # server restart (~15 s idle, minutes on a busy CI) + load and checks


class TrippingProxy(Forwarder):
    """Once ``armed`` with a marker, the first request that names it (an artifact of the
    version being promoted) calls ``trip`` (which kills the server) before it is passed on.

    The marker is the promoted version's own artifact path, not any artifact request: the
    service also reads run artifacts on its own (a model's drift reference), and a trip on one
    of those would leave the version's load itself untested."""

    def __init__(self, upstream: int, trip: Callable[[], None]) -> None:
        self.trip = trip
        self.marker: bytes | None = None
        self.tripped = threading.Event()
        self._lock = threading.Lock()
        super().__init__(upstream)

    def arm(self, marker: str) -> None:
        self.marker = marker.encode()

    def on_request(self, data: bytes) -> None:
        if self.marker is not None and b"mlflow-artifacts" in data and self.marker in data:
            with self._lock:
                if not self.tripped.is_set():
                    self.trip()
                    self.tripped.set()


def refuses_connections(port: int) -> bool:
    """True when nothing listens on ``port`` any more (the kill really took the server down)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def model_id(store: Store, version: str) -> str:
    """The MLflow 3 logged-model id whose artifacts a version's load downloads."""
    source = MlflowClient().get_model_version(store.settings.tracking.registered_model, version)
    return source.source.removeprefix("models:/")


def serve(store: Store, proxy_port: int) -> tuple[subprocess.Popen, str, Path]:
    """``clearsight serve`` following the champion through the proxy, polling every second."""
    port = free_port()
    env = {
        **store.env,
        **BOUNDED_HTTP_RETRIES,
        **TOKENS,  # else `clearsight serve` writes an admin token under CLEARSIGHT_HOME
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{proxy_port}",
        "BENTOML_HOME": str(store.root / "bentoml"),
        "CLEARSIGHT_SERVING__POLL_SECONDS": "1",
        "CLEARSIGHT_SERVING__RETRY_FIRST_SECONDS": "1",
        "CLEARSIGHT_SERVING__RETRY_MAX_SECONDS": "4",
    }
    env.pop("CLEARSIGHT_SERVING__FOLLOW_ALIAS", None)
    log = store.root / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "clearsight", "serve", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url, log
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            pytest.fail(f"service not ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def predict(url: str, x: np.ndarray) -> tuple[str, np.ndarray]:
    body = {"images": [{"kind": "array", "scale": "0-1", "data": i.tolist()} for i in x]}
    response = httpx.post(f"{url}/predict", json=body | {"explain": False}, timeout=60)
    assert response.status_code == 200, response.text
    answer = response.json()
    return answer["model"]["version"], np.array([r["probabilities"] for r in answer["results"]])


def test_a_promotion_during_a_registry_outage_goes_live_when_it_is_back(
    server_store: tuple[Store, int], digits
) -> None:
    store, port = server_store
    images, labels = digits
    panel = Dataset(images[1::20], labels[1::20], "panel")
    x = images[:2].astype(np.float32) / 255.0
    server = {"process": start_server(store.root, port)}
    outage: list[bool] = []

    def kill_server() -> None:
        stop_server(server["process"], signal.SIGKILL)
        outage.append(refuses_connections(port))

    proxy = TrippingProxy(port, kill_server)
    service = None
    try:
        models = {}
        for seed in (0, 1):
            keras.utils.set_random_seed(seed)
            model = train(
                images[::2],
                labels[::2],
                images[1::4],
                labels[1::4],
                TrainSettings(epochs=1, batch_size=32, augment=False, seed=seed),
                verbose=0,
            ).model
            models[register(store.settings, model, panel)] = model
        assert list(models) == ["1", "2"]
        point_champion(store.settings, ["1"])
        service, url, log = serve(store, proxy.port)
        assert predict(url, x)[0] == "1"

        proxy.arm(model_id(store, "2"))
        point_champion(store.settings, ["1", "2"])  # a promotion; the server dies mid-load
        assert proxy.tripped.wait(60), f"v2 was never downloaded:\n{log.read_text()[-3000:]}"
        assert outage == [True], "the killed mlflow server still accepts connections"
        time.sleep(3)  # the failed load and a few retries against a dead registry
        version, probabilities = predict(url, x)  # still answering, with the old model
        assert version == "1"
        np.testing.assert_allclose(probabilities, offline_probabilities(models["1"], x), atol=1e-4)

        began = time.monotonic()
        server["process"] = start_server(store.root, port)  # the same store comes back
        back = time.monotonic() - began
        while (meta := httpx.get(f"{url}/metadata", timeout=10).json())["version"] != "2":
            if time.monotonic() - began > LIVE_DEADLINE_S:
                pytest.fail(f"v2 not live {LIVE_DEADLINE_S} s later:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        live_after = time.monotonic() - began
        print(f"\nregistry back in {back:.1f} s; v2 live {live_after:.1f} s after the restart")
        assert meta["live"]["last_refusal"] is None, meta["live"]
        assert meta["live"]["swaps"] == 1
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert "clearsight_model_swap_refusals_total 0.0" in metrics
        text = log.read_text()
        assert "transient" in text, f"the failed load was not seen as an outage:\n{text[-4000:]}"
        version, probabilities = predict(url, x)
        assert version == "2"
        np.testing.assert_allclose(probabilities, offline_probabilities(models["2"], x), atol=1e-4)
    finally:
        proxy.close()
        if service is not None:
            stop(service)
        stop_server(server["process"])
