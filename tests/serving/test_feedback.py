"""``POST /feedback`` on the real service, and the whole path it starts: feedback -> incoming
batch -> new data version -> retrain (the real Prefect flow) -> promotion -> the nightly run
that skips because nothing is new.
"""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from clearsight.data.sources import load_embedded
from serving.guards import OPEN_PATHS, scope_of
from tests.serving.conftest import FEEDBACK, Registry, Server, answered

N_CONCURRENT = 50


@pytest.fixture(scope="module")
def fresh() -> tuple[np.ndarray, np.ndarray]:
    """Real digits outside the ``digits`` fixture (the embedded set's 41st-60th per class)."""
    full = load_embedded()
    index = np.concatenate([np.flatnonzero(full.labels == c)[40:60] for c in range(10)])
    return full.images[index].copy(), full.labels[index].copy()


def _array(image: np.ndarray) -> dict:
    return {"kind": "array", "scale": "0-255", "data": image.astype(int).tolist()}


def _png(image: np.ndarray) -> dict:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return {"kind": "base64", "data": base64.b64encode(buffer.getvalue()).decode()}


def _batches(registry: Registry) -> set[Path]:
    folder = registry.settings.incoming_dir
    assert folder is not None
    return set(folder.glob("feedback-*.npz")) if folder.is_dir() else set()


def test_feedback_has_its_own_scope() -> None:
    assert "/feedback" not in OPEN_PATHS and scope_of("/feedback") == "feedback"
    assert scope_of("/predict") == "predict" and scope_of("/admin/reload") == "admin"


def test_bad_feedback_is_refused_and_writes_nothing(
    client: httpx.Client, registry: Registry, fresh
) -> None:
    images, labels = fresh
    before = _batches(registry)
    [rid, other] = answered(client, images[:2], per_request=1).request_ids
    cases = [
        ({"images": [_array(images[0])], "labels": [10], "request_id": rid}, 400, "labels.0"),
        (
            {"images": [_array(images[0])], "labels": [1, 2], "request_id": rid},
            400,
            "2 labels for 1 images",
        ),
        ({"images": [_array(images[0])], "request_id": rid}, 400, "labels"),
        ({"images": [_array(images[0])], "labels": [1]}, 400, "request_id"),
        (
            {
                "images": [_array(images[0]), {"kind": "base64", "data": "bm90IGFuIGltYWdl"}],
                "labels": [1, 2],
                "request_id": rid,
            },
            422,
            "image 1",
        ),
        (
            {"images": [_array(images[0] * 2.0)], "labels": [int(labels[0])], "request_id": rid},
            422,
            "image 0",
        ),
        # feedback names a request this service answered, for the images it answered
        (
            {"images": [_array(images[0])], "labels": [1], "request_id": "made-up"},
            422,
            "was not answered here",
        ),
        (
            {"images": [_array(images[1])], "labels": [1], "request_id": rid},
            422,
            "is not one request",
        ),
        (
            {
                "images": [_array(images[0]), _array(images[1])],
                "labels": [1, 2],
                "request_ids": [rid],
            },
            400,
            "1 request ids for 2 images",
        ),
    ]
    for body, status, named in cases:
        response = client.post("/feedback", json=body, headers=FEEDBACK)
        assert response.status_code == status, response.text
        assert named in response.json()["error"]
        assert response.json()["code"]
    assert _batches(registry) == before, "nothing is stored from a refused request"
    both = {
        "images": [_array(images[0]), _array(images[1])],
        "labels": [int(labels[0]), int(labels[1])],
        "request_ids": [rid, other],
    }
    response = client.post("/feedback", json=both, headers=FEEDBACK)
    assert response.status_code == 202, response.text
    (_batches(registry) - before).pop().unlink()  # later tests start from a clean folder


def test_concurrent_feedback_loses_no_image(server: Server, registry: Registry, fresh) -> None:
    """50 posts at once (1-3 images each, arrays and PNGs): every image is in exactly one
    batch, each batch whole, with its label and request id."""
    images, labels = fresh
    before = _batches(registry)

    def rows_of(i: int) -> list[int]:
        return [(i * 3 + k) % len(images) for k in range(1 + i % 3)]

    def encoded(i: int) -> list[dict]:
        encode = _array if i % 2 else _png
        return [encode(images[r]) for r in rows_of(i)]

    request_ids = []  # feedback names the prediction: predict each post's images first
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for i in range(N_CONCURRENT):
            predicted = http.post("/predict", json={"images": encoded(i), "explain": False})
            assert predicted.status_code == 200, predicted.text
            request_ids.append(predicted.json()["request_id"])

    def post(i: int) -> dict:
        rows = rows_of(i)
        body = {
            "images": encoded(i),
            "labels": [int(labels[r]) for r in rows],
            "request_id": request_ids[i],
        }
        with httpx.Client(base_url=server.url, timeout=60) as http:
            response = http.post("/feedback", json=body, headers=FEEDBACK)
        assert response.status_code == 202, response.text
        return response.json() | {"sent": rows}

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, range(N_CONCURRENT)))
    written = _batches(registry) - before
    try:
        assert len({a["batch"] for a in answers}) == N_CONCURRENT == len(written)
        sent = sum(len(a["sent"]) for a in answers)
        stored = 0
        folder = next(iter(written)).parent
        for i, answer in enumerate(answers):
            with np.load(folder / answer["batch"]) as npz:
                assert len(npz["x_train"]) == answer["count"] == len(answer["sent"])
                assert npz["y_train"].tolist() == [int(labels[r]) for r in answer["sent"]]
                assert set(npz["request_id"]) == {request_ids[i]}
                assert len(npz["served_label"]) == answer["count"]
                stored += len(npz["x_train"])
                if i % 2:  # arrays are stored exactly
                    assert np.array_equal(npz["x_train"], images[answer["sent"]])
        assert stored == sent
        assert list(folder.glob(".feedback-*")) == [], "no temporary file is left behind"
    finally:
        for path in written:  # the end-to-end test below starts from a clean folder
            path.unlink()


@pytest.mark.slow
def test_feedback_becomes_a_new_data_version_and_a_better_champion(
    client: httpx.Client,
    registry: Registry,
    digits,
    fresh,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A weak champion (1 epoch) -> feedback through the service -> make run (the retrain
    flow: more epochs on the new data version: promoted) -> the nightly run skips (no new
    data).

    The first model is honestly weak (one epoch), so the second, trained longer on more data,
    beats it on the same frozen holdout; that it was trained on the feedback's data version is
    read back from its MLflow run."""
    from mlflow.tracking import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.testing.utilities import prefect_test_harness

    from clearsight.config import Settings
    from clearsight.data.gate import run_data_gate
    from clearsight.pipelines.promote import evaluate_and_promote
    from clearsight.pipelines.train import train_and_assess
    from flows.retrain import retrain

    root = tmp_path_factory.mktemp("feedback-flow")
    base = root / "base.npz"
    np.savez(base, x_train=digits[0], y_train=digits[1])
    for name, value in {
        "CLEARSIGHT_DATA_DIR": root / "data",
        "CLEARSIGHT_MLFLOW_DIR": root / "mlflow",
        "CLEARSIGHT_INCOMING_DIR": registry.settings.incoming_dir,  # where the service writes
        "BENTOML_HOME": root / "bentoml",
        "CLEARSIGHT_DATA__SOURCE": "npz",
        "CLEARSIGHT_DATA__PATH": base,
        "CLEARSIGHT_PROMOTION__MIN_CLASS_RECALL": 0,
        "CLEARSIGHT_PROMOTION__MAX_COMPLETENESS_GAP": 1,
        "CLEARSIGHT_TRACKING__LOG_SYSTEM_METRICS": "false",
        "CLEARSIGHT_TRACKING__LOG_EXPLANATIONS": "false",
        "CLEARSIGHT_TRAIN__BATCH_SIZE": 32,
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow_client = MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    images, labels = fresh
    # The weak champion: one epoch, promoted by the library directly (what `clearsight train`
    # and `clearsight promote` do). Not by a second flow run: a flow run builds a bento after
    # each promotion, and BentoML cannot build twice in one process (the service module's
    # Prometheus metrics would be registered twice), which a test process would need here.
    settings = Settings().override("train", epochs=1)
    gated = run_data_gate(settings)
    assert gated.data_version is not None and gated.data_version.id == "dv0001"
    weak_run = train_and_assess(settings, gated, verbose=0)
    weak = evaluate_and_promote(settings, gated.splits.holdout, weak_run.version)
    assert weak.promoted
    with prefect_test_harness(server_startup_timeout=180):
        served = answered(client, images)  # feedback names the predictions it corrects
        for start in range(0, len(images), 50):  # 200 labelled digits, 4 feedback requests
            rows = range(start, start + 50)
            body = {
                "images": [_array(images[r]) for r in rows],
                "labels": [int(labels[r]) for r in rows],
                "request_ids": served.request_ids[start : start + 50],
            }
            response = client.post("/feedback", json=body, headers=FEEDBACK)
            assert response.status_code == 202 and response.json()["count"] == 50

        strong = retrain(source="npz", path=str(base), epochs=6)
        assert strong is not None and strong.data_version.startswith("dv0005 (600 images")
        run = mlflow_client.get_run(strong.run_id)
        assert run.data.tags["data_version"] == "dv0005"
        inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
        assert "dv0005" in inputs and inputs["dv0005"].dataset.digest
        assert "trained on data version: dv0005" in strong.to_markdown()
        assert strong.promoted, strong.reason
        assert strong.metrics["holdout_accuracy"] > weak.challenger_metrics["holdout_accuracy"]
        assert strong.champion == strong.version

        versions_before = len(mlflow_client.search_model_versions("name='clearsight-cnn'"))
        skipped = retrain(source="npz", path=str(base), only_if_new_data=True)
        assert skipped is None
        assert len(mlflow_client.search_model_versions("name='clearsight-cnn'")) == (
            versions_before
        ), "nothing was trained"
        with get_client(sync_client=True) as prefect:
            artifacts = prefect.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["retrain-skipped"]))
            )
        assert artifacts and "no new data" in artifacts[0].data
