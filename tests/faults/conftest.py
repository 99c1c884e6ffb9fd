"""Shared pieces of the fault-injection suite: a small registry on a temporary SQLite store,
and the ``clearsight`` command run as a real child process against it.

Every test here breaks one part of the system on purpose (a killed trainer, a store that goes
away, a full disk, a corrupted artifact, racing operators, an overloaded service, a network
with nothing outside) and checks what survives. They are marked ``faults``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import httpx
import keras
import mlflow
import pytest
from mlflow.tracking import MlflowClient

from clearsight.choices import CHAMPION, PREVIOUS_CHAMPION
from clearsight.config import Settings
from clearsight.model.cnn import build_cnn
from clearsight.tracking import store as tracking
from clearsight.tracking.faults import BOUNDED_HTTP_RETRIES
from clearsight.tracking.registry import HISTORY_TAG
from clearsight.tracking.run import log_keras_model
from tests.conftest import REPO, stores_under

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of this folder is marked ``faults`` (``pytest -m faults`` runs the suite)."""
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.faults)


@dataclass(frozen=True)
class Store:
    """A temporary store and the environment that points the CLI at it."""

    root: Path
    settings: Settings
    env: dict[str, str]


def store_env(root: Path) -> dict[str, str]:
    """The environment of a child ``clearsight``: every store under ``root``, no server."""
    env = {
        **os.environ,
        "CLEARSIGHT_HOME": str(REPO),
        "CLEARSIGHT_DATA_DIR": str(root / "data"),
        "CLEARSIGHT_MLFLOW_DIR": str(root / "mlflow"),
        "CLEARSIGHT_TRACKING__LOG_SYSTEM_METRICS": "false",
        "COLUMNS": "250",
    }
    for name in ("MLFLOW_TRACKING_URI", "CLEARSIGHT_SERVICE_URL", "PREFECT_API_URL"):
        env.pop(name, None)
    return env


def skip_or_fail(reason: str) -> NoReturn:
    """Skip a row that this machine cannot run (no root, no namespaces), but fail it under
    ``CI=true``: in CI every row of "What survives what" must run, never vanish as a skip."""
    if os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}:
        pytest.fail(f"{reason} (CI=true: this row must run here, not be skipped)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_store(root: Path, **sections) -> Store:
    return Store(root, stores_under(root, **sections), store_env(root))


def clearsight(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m clearsight ARGS`` in the repository, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "clearsight", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def register_untrained(settings: Settings, seed: int) -> str:
    """A new registered version holding an untrained seed CNN (cheap; enough for aliases)."""
    keras.utils.set_random_seed(seed)
    experiment = tracking.configure(settings)
    with mlflow.start_run(experiment_id=experiment):
        info = log_keras_model(build_cnn(), settings.tracking.registered_model)
    return str(info.registered_model_version)


def set_history(settings: Settings, history: list[str]) -> None:
    """Champion history and aliases as a sequence of promotions would have left them."""
    tracking.configure(settings)
    client = MlflowClient()
    name = settings.tracking.registered_model
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))
    client.set_registered_model_alias(name, CHAMPION, history[-1])
    if len(history) > 1:
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, history[-2])


READY_S = 180  # an mlflow server is healthy in ~15 s idle; far longer on a busy 2-core CI


def start_server(root: Path, port: int) -> subprocess.Popen:
    """``mlflow server`` on 127.0.0.1:port (one worker, no job runners: ready sooner)."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (root / "server.log").open("a")
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{root / 'server.db'}"]
    command += ["--artifacts-destination", str(root / "artifacts")]
    process = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        assert process.poll() is None, (root / "server.log").read_text()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow server not ready in {READY_S} s")


def stop_server(process: subprocess.Popen, how: signal.Signals = signal.SIGTERM) -> None:
    """The whole process group: its job processes would outlive a plain SIGTERM. ``SIGKILL``
    is a crash: no request in flight gets an answer."""
    if process.poll() is None:
        os.killpg(process.pid, how)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture
def server_store(tmp_path: Path, monkeypatch) -> Iterator[tuple[Store, int]]:
    """A store whose tracking URI is an ``mlflow server`` on a free port (not started yet),
    for this process and for child ``clearsight`` processes, with bounded HTTP retries."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    for name, value in BOUNDED_HTTP_RETRIES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    store = make_store(tmp_path)
    store.env.update({"MLFLOW_TRACKING_URI": url, **BOUNDED_HTTP_RETRIES})
    yield store, port


class Forwarder:
    """A TCP forwarder on a free loopback port to the mlflow server on ``upstream`` (None:
    every connection is closed at once, as a stopped server's would be refused). Pointing
    ``upstream`` at another server process on the same store is a restart whose length the
    test chooses; ``on_request`` sees every chunk a client sends before it is passed on."""

    def __init__(self, upstream: int | None) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def on_request(self, data: bytes) -> None:
        """Called with each chunk a client sends, before it is forwarded."""

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            if self.upstream is None:
                raise ConnectionRefusedError
            upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
        except OSError:  # nothing there: the client sees its connection closed
            client.close()
            return
        upstream.settimeout(None)
        threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()
        self._pipe(client, upstream, True)

    def _pipe(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        try:
            while data := source.recv(65536):
                if requests:
                    self.on_request(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()
