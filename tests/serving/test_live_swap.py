"""A promotion goes live without a restart: a real ``clearsight serve`` following ``@champion``
under a steady request loop, while the alias moves, rolls back, and points at a broken model.

Every request of the loop must get a 2xx from exactly one model version, and its numbers must
be that version's (checked against the model offline). The times from alias move to the first
answer of the new version are printed (the closing numbers of the live-swap issue).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import keras
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from clearsight.choices import CHAMPION
from clearsight.config import Settings, TrainSettings
from clearsight.data import Dataset
from clearsight.model.fitting import train
from clearsight.reporting.run_artifacts import write_acceptance_panel
from clearsight.tracking import store as tracking
from clearsight.tracking.registry import HISTORY_TAG, rollback
from clearsight.tracking.run import log_keras_model
from tests.conftest import stores_under
from tests.serving.conftest import ADMIN, TOKENS

from .conftest import READY_TIMEOUT_S, REPO, free_port, offline_probabilities, stop

pytestmark = pytest.mark.slow

POLL_SECONDS = 2.0
SWAP_DEADLINE_S = POLL_SECONDS + 90  # poll interval + load, warm-up and checks on 2 busy cores


@dataclass
class Swappable:
    settings: Settings
    env: dict[str, str]
    models: dict[str, keras.Model]  # registry version -> the model, offline
    panel: Dataset
    url: str = ""
    process: subprocess.Popen | None = None
    log: Path | None = None


def register(
    settings: Settings, model: keras.Model, panel: Dataset, panel_model: keras.Model | None = None
) -> str:
    """A registered version with what a training run logs for the swap check; the panel's
    probabilities come from ``panel_model`` when given (a run whose log disagrees with its
    model, as a mixed-up upload or a wrong build would leave)."""
    experiment = tracking.configure(settings)
    with (
        mlflow.start_run(experiment_id=experiment),
        tempfile.TemporaryDirectory() as tmp,
    ):
        write_acceptance_panel(panel_model or model, panel, Path(tmp))
        mlflow.log_artifacts(tmp)
        info = log_keras_model(model, settings.tracking.registered_model)
    return str(info.registered_model_version)


def point_champion(settings: Settings, history: list[str]) -> None:
    """Move ``champion`` as a promotion does (history tag, then the alias)."""
    client = MlflowClient(tracking.tracking_uri(settings))
    name = settings.tracking.registered_model
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))
    client.set_registered_model_alias(name, CHAMPION, history[-1])


def corrupt(settings: Settings, version: str) -> None:
    """Overwrite the version's saved model with garbage, as a broken disk or upload would."""
    client = MlflowClient(tracking.tracking_uri(settings))
    mv = client.get_model_version(settings.tracking.registered_model, version)
    model_id = mv.source.removeprefix("models:/")  # MLflow 3: a logged model, by id
    folder = Path(settings.mlflow_dir) / "artifacts" / "models" / model_id
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix in {".keras", ".h5"}]
    assert files, f"no saved model under {folder}"
    for path in files:
        path.write_bytes(b"not a model" * 100)


@pytest.fixture(scope="module")
def swappable(tmp_path_factory: pytest.TempPathFactory, digits) -> Iterator[Swappable]:
    """Three versions (two good, one to corrupt), v1 champion, and the service following it."""
    root = tmp_path_factory.mktemp("live-swap")
    settings = stores_under(root)
    images, labels = digits
    panel = Dataset(images[1::20], labels[1::20], "panel")
    models = {}
    for seed, epochs in ((0, 3), (1, 1), (2, 1)):
        keras.utils.set_random_seed(seed)
        model = train(
            images[::2],
            labels[::2],
            images[1::4],
            labels[1::4],
            TrainSettings(epochs=epochs, batch_size=32, augment=False, seed=seed),
            verbose=0,
        ).model
        models[register(settings, model, panel)] = model
    assert list(models) == ["1", "2", "3"]
    point_champion(settings, ["1"])
    env = {
        "CLEARSIGHT_HOME": str(REPO),
        "CLEARSIGHT_DATA_DIR": str(root / "data"),
        "CLEARSIGHT_MLFLOW_DIR": str(root / "mlflow"),
        "BENTOML_HOME": str(root / "bentoml"),
        "CLEARSIGHT_SERVING__POLL_SECONDS": str(POLL_SECONDS),
        **TOKENS,
    }
    env = {**os.environ, **env}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("CLEARSIGHT_SERVING__FOLLOW_ALIAS", None)
    state = Swappable(settings, env, models, panel)
    port = free_port()
    state.url = f"http://127.0.0.1:{port}"
    state.log = root / "serve.log"
    with state.log.open("w") as out:
        state.process = subprocess.Popen(
            [sys.executable, "-m", "clearsight", "serve", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready(state):
            if state.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"service not ready:\n{state.log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield state
    finally:
        stop(state.process)


def ready(state: Swappable) -> bool:
    try:
        return httpx.get(f"{state.url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def live_version(state: Swappable) -> str:
    return httpx.get(f"{state.url}/metadata", timeout=10).json()["version"]


@dataclass
class Loop:
    """A steady mix of predictions and explained predictions, every answer recorded."""

    url: str
    x: np.ndarray
    answers: list[tuple[int, str | None, np.ndarray | None, bool]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, worker: int) -> None:
        images = [{"kind": "array", "scale": "0-1", "data": img.tolist()} for img in self.x]
        with httpx.Client(base_url=self.url, timeout=60) as http:
            n = worker
            while not self.stop.is_set():
                explain = n % 3 == 0
                response = http.post("/predict", json={"images": images, "explain": explain})
                n += 1
                if response.status_code != 200:
                    self.answers.append((response.status_code, None, None, explain))
                    continue
                body = response.json()
                probabilities = np.array([r["probabilities"] for r in body["results"]])
                self.answers.append((200, body["model"]["version"], probabilities, explain))

    def start(self, workers: int = 2) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self.run, args=(w,), daemon=True) for w in range(workers)
        ]
        for thread in threads:
            thread.start()
        return threads


def wait_for_version(state: Swappable, version: str) -> float:
    """Seconds until ``/metadata`` reports ``version`` (fails past the deadline)."""
    start = time.monotonic()
    while live_version(state) != version:
        if time.monotonic() - start > SWAP_DEADLINE_S:
            pytest.fail(
                f"v{version} not live in {SWAP_DEADLINE_S} s:\n{state.log.read_text()[-4000:]}"
            )
        time.sleep(0.2)
    return time.monotonic() - start


def test_alias_moves_go_live_under_load_and_every_answer_is_one_version(swappable, digits):
    images, _ = digits
    x = images[:4].astype(np.float32) / 255.0
    expected = {v: offline_probabilities(m, x) for v, m in swappable.models.items()}
    assert live_version(swappable) == "1"
    loop = Loop(swappable.url, x)
    threads = loop.start()
    try:
        time.sleep(3)
        point_champion(swappable.settings, ["1", "2"])  # a promotion
        to_v2 = wait_for_version(swappable, "2")
        time.sleep(3)
        assert rollback(swappable.settings) == ("2", "1")  # the one-command rollback
        back_to_v1 = wait_for_version(swappable, "1")
        time.sleep(3)
    finally:
        loop.stop.set()
        for thread in threads:
            thread.join(timeout=120)
    statuses = [a[0] for a in loop.answers]
    served = {a[1] for a in loop.answers}
    print(
        f"\nswap times: v1->v2 {to_v2:.1f} s, rollback v2->v1 {back_to_v1:.1f} s; "
        f"{len(loop.answers)} requests, {sum(s != 200 for s in statuses)} errors, "
        f"{sum(a[3] for a in loop.answers)} with explanations"
    )
    assert statuses and all(s == 200 for s in statuses), sorted(set(statuses))
    assert served == {"1", "2"}
    for _, version, probabilities, _ in loop.answers:
        np.testing.assert_allclose(probabilities, expected[version], atol=1e-4)
    meta = httpx.get(f"{swappable.url}/metadata").json()
    assert meta["live"]["following"] == CHAMPION and meta["live"]["swaps"] == 2
    metrics = httpx.get(f"{swappable.url}/metrics").text
    assert "clearsight_model_swaps_total 2.0" in metrics


def test_a_corrupted_version_is_refused_and_the_old_one_keeps_serving(swappable, digits):
    images, _ = digits
    corrupt(swappable.settings, "3")
    point_champion(swappable.settings, ["1", "3"])
    answer = httpx.post(
        f"{swappable.url}/admin/reload?wait=true", headers=ADMIN, timeout=120
    ).json()
    assert answer["outcome"] == "refused" and answer["version"] == "3", answer
    assert answer["live_version"] == "1"
    meta = httpx.get(f"{swappable.url}/metadata").json()
    assert meta["version"] == "1" and meta["live"]["last_refusal"]["version"] == "3"
    assert "cannot load" in meta["live"]["last_refusal"]["reason"]
    metrics = httpx.get(f"{swappable.url}/metrics").text
    assert "clearsight_model_swap_refusals_total 1.0" in metrics
    x = images[:2].astype(np.float32) / 255.0
    body = {"images": [{"kind": "array", "scale": "0-1", "data": i.tolist()} for i in x]}
    response = httpx.post(f"{swappable.url}/predict", json=body | {"explain": False})
    assert response.status_code == 200 and response.json()["model"]["version"] == "1"
    again = httpx.post(f"{swappable.url}/admin/reload?wait=true", headers=ADMIN, timeout=60).json()
    assert again["outcome"] == "refused"  # remembered: not reloaded on every poll
    assert "clearsight_model_swap_refusals_total 1.0" in httpx.get(f"{swappable.url}/metrics").text
    point_champion(swappable.settings, ["1"])  # leave the registry consistent


def test_a_version_whose_logged_panel_disagrees_is_refused(swappable, digits):
    """The acceptance check itself: v2's model, logged with v1's panel probabilities."""
    settings, models = swappable.settings, swappable.models
    mismatched = register(settings, models["2"], swappable.panel, panel_model=models["1"])
    refusals = metric(swappable, "clearsight_model_swap_refusals_total")
    point_champion(settings, ["1", mismatched])
    answer = httpx.post(
        f"{swappable.url}/admin/reload?wait=true", headers=ADMIN, timeout=180
    ).json()
    assert answer["outcome"] == "refused" and answer["version"] == mismatched, answer
    assert "differ from the logged ones" in answer["detail"], answer
    assert answer["live_version"] == "1"
    meta = httpx.get(f"{swappable.url}/metadata").json()
    assert meta["version"] == "1" and meta["live"]["last_refusal"]["version"] == mismatched
    assert metric(swappable, "clearsight_model_swap_refusals_total") == refusals + 1
    images, _ = digits
    x = images[:2].astype(np.float32) / 255.0
    body = {"images": [{"kind": "array", "scale": "0-1", "data": i.tolist()} for i in x]}
    response = httpx.post(f"{swappable.url}/predict", json=body | {"explain": False})
    assert response.status_code == 200 and response.json()["model"]["version"] == "1"
    np.testing.assert_allclose(
        [r["probabilities"] for r in response.json()["results"]],
        offline_probabilities(models["1"], x),
        atol=1e-4,
    )
    point_champion(settings, ["1"])  # leave the registry consistent


def metric(state: Swappable, name: str) -> float:
    lines = httpx.get(f"{state.url}/metrics").text.splitlines()
    values = [float(line.split()[-1]) for line in lines if line.startswith(f"{name} ")]
    return values[0] if values else 0.0


def test_reload_starts_a_check_in_the_background(swappable):
    answer = httpx.post(f"{swappable.url}/admin/reload", headers=ADMIN, timeout=30)
    assert answer.status_code == 202 and answer.json()["status"] == "checking"


def test_a_pinned_bento_refuses_reload_requests(client: httpx.Client):
    """The session's bento serves one pinned version without MLflow: reload is a clear 409."""
    answer = client.post("/admin/reload", headers=ADMIN)
    assert answer.status_code == 409 and answer.json()["code"] == "not_following"
    assert client.get("/metadata").json()["live"]["following"] is None
