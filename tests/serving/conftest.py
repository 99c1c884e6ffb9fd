"""One real service for the whole module: a registry with a champion, a bento built from it
by ``clearsight build-service``, and ``clearsight serve --bento`` on a free loopback port.

The server runs without any MLflow store (its tracking URI points nowhere), which shows the
bento is self-contained. It runs in its own process group and is stopped at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import keras
import mlflow
import numpy as np
import pytest

from clearsight.config import PromotionSettings, Settings, TrainSettings
from clearsight.data import Dataset
from clearsight.model.fitting import train
from clearsight.pipelines.promote import evaluate_and_promote
from clearsight.tracking import store as tracking
from clearsight.tracking.run import log_keras_model
from tests.conftest import stores_under

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 150
# Every service the tests start has these scoped tokens (docs/security.md).
FEEDBACK_TOKEN = "feedback-token-for-tests"
ADMIN_TOKEN = "admin-token-for-tests"
FEEDBACK = {"Authorization": f"Bearer {FEEDBACK_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TOKENS = {
    "CLEARSIGHT_SERVING__FEEDBACK_TOKEN": FEEDBACK_TOKEN,
    "CLEARSIGHT_SERVING__ADMIN_TOKEN": ADMIN_TOKEN,
    # The module's tests send ~1,000 feedback images from one caller within minutes.
    "CLEARSIGHT_SERVING__FEEDBACK_BURST_IMAGES": "5000",
}
RUN_TAGS = {
    "data_digest.train": "a" * 64,
    "data_digest.validation": "b" * 64,
    "data_digest.holdout": "c" * 64,
    "data_contract_hash": "d" * 16,
    "keras_backend": "tensorflow",
}


@dataclass(frozen=True)
class Registry:
    settings: Settings
    env: dict[str, str]  # CLEARSIGHT_* and BENTOML_HOME pointing at the temporary stores
    version: str
    run_id: str
    bentoml_home: Path


@dataclass(frozen=True)
class Built:
    bento_tag: str
    model_tag: str
    archive: Path
    output: str


@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen
    log: Path
    model: keras.Model  # the served model, loaded offline from the bento's model store

    def alive(self) -> bool:
        return self.process.poll() is None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clearsight", *args],
        env={**env, "COLUMNS": "250"},  # rich folds tables to the terminal width
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, digits) -> Registry:
    """A SQLite registry whose champion is a briefly trained seed CNN (v1)."""
    root = tmp_path_factory.mktemp("serving")
    # The serving tests need a champion, not a fast one: a busy CI box must not fail the bar.
    bar = PromotionSettings(
        min_class_recall=0.0, max_completeness_gap=1.0, max_latency_p95_ms=10_000.0
    )
    settings = stores_under(root, promotion=bar)
    images, labels = digits
    keras.utils.set_random_seed(0)
    model = train(
        images[::2],
        labels[::2],
        images[1::4],
        labels[1::4],
        TrainSettings(epochs=4, batch_size=32, augment=False),
        verbose=0,
    ).model
    experiment = tracking.configure(settings)
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.set_tags(RUN_TAGS)
        info = log_keras_model(model, settings.tracking.registered_model)
    version = str(info.registered_model_version)
    holdout = Dataset(images[1::2], labels[1::2], "holdout")
    assert evaluate_and_promote(settings, holdout, version).promoted
    env = {
        **os.environ,
        "CLEARSIGHT_HOME": str(REPO),
        "CLEARSIGHT_DATA_DIR": str(root / "data"),
        "CLEARSIGHT_MLFLOW_DIR": str(root / "mlflow"),
        "BENTOML_HOME": str(root / "bentoml"),
        **TOKENS,
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    return Registry(settings, env, version, run.info.run_id, root / "bentoml")


@pytest.fixture(scope="session")
def built(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """``clearsight build-service --export``: the bento of the champion, and its archive."""
    archive = tmp_path_factory.mktemp("export") / "clearsight.bento"
    result = run_cli("build-service", "--export", str(archive), env=registry.env)
    assert result.returncode == 0, result.stdout + result.stderr
    words = result.stdout.split()
    bento_tag = words[words.index("bento") + 1]
    model_tag = words[words.index("serves") + 1]
    return Built(bento_tag, model_tag, archive, result.stdout)


@pytest.fixture(scope="session")
def server(
    registry: Registry, built: Built, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """``clearsight serve --bento`` on 127.0.0.1, ready (warmed up), without MLflow."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "serve.log"
    env = {**registry.env, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}  # nothing there
    env["CLEARSIGHT_MLFLOW_DIR"] = str(tmp_path_factory.mktemp("no-mlflow"))
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clearsight",
                "serve",
                "--bento",
                built.bento_tag,
                "--port",
                str(port),
            ],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited ({process.returncode}):\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready in {READY_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        model_dir = registry.bentoml_home / "models" / Path(*built.model_tag.split(":"))
        model = keras.saving.load_model(model_dir / "model.keras", compile=False)
        yield Server(url, process, log, model)
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


def offline_probabilities(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The model's own answer for float32 (N, 28, 28) images in 0-1."""
    return keras.ops.convert_to_numpy(model(x[..., None], training=False))


@dataclass(frozen=True)
class Answered:
    """What the service answered for each image: its request id, label and confidence."""

    request_ids: list[str]
    labels: np.ndarray
    confidences: np.ndarray


def answered(http: httpx.Client, images: np.ndarray, per_request: int = 50) -> Answered:
    """Predict uint8 (N, 28, 28) images (``per_request`` at a time, no explanations): the
    answers feedback on these images has to name."""
    ids: list[str] = []
    labels: list[int] = []
    confidences: list[float] = []
    for start in range(0, len(images), per_request):
        chunk = images[start : start + per_request]
        body = {
            "images": [
                {"kind": "array", "scale": "0-255", "data": im.astype(int).tolist()} for im in chunk
            ],
            "explain": False,
        }
        response = http.post("/predict", json=body)
        assert response.status_code == 200, response.text
        payload = response.json()
        ids += [payload["request_id"]] * len(chunk)
        labels += [r["label"] for r in payload["results"]]
        confidences += [r["confidence"] for r in payload["results"]]
    return Answered(ids, np.array(labels), np.array(confidences))
