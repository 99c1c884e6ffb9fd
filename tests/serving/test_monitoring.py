"""Per-request out-of-distribution warnings, the traffic log and drift scores, over real HTTP
on the running BentoML server (a pinned bento: the bounds are the shipped embedded ones)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from clearsight.monitoring.scores import DriftScores
from clearsight.monitoring.traffic import read_window

from .conftest import Registry

pytestmark = pytest.mark.slow


def array_item(image: np.ndarray) -> dict:
    return {"kind": "array", "scale": "0-1", "data": image.tolist()}


def cases(digits) -> dict[str, np.ndarray]:
    images, _ = digits
    clean = images[5].astype(np.float32) / 255.0
    return {
        "clean": clean,
        "inverted": 1.0 - clean,  # arrays are taken as given: nothing re-inverts them
        "shifted": np.roll(clean, (7, 7), axis=(0, 1)),
    }


def traffic_dir(registry: Registry) -> Path:
    return Path(registry.env["CLEARSIGHT_DATA_DIR"]) / "traffic"


def wait_for(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def test_results_carry_out_of_distribution_checks_on_every_json_route(
    client: httpx.Client, digits
) -> None:
    images = cases(digits)
    items = [array_item(images[k]) for k in ("clean", "inverted", "shifted")]
    answers = {
        "/predict": client.post("/predict", json={"images": items, "explain": False}),
        "/classify": client.post("/classify", json={"images": items}),
        "/explain": client.post("/explain", json={"images": items}),
    }
    for route, response in answers.items():
        assert response.status_code == 200, (route, response.text)
        clean, inverted, shifted = (r["out_of_distribution"] for r in response.json()["results"])
        assert clean == [], route
        assert any(c.startswith("mean_intensity") for c in inverted), (route, inverted)
        assert any(c.startswith("ink_fraction") for c in inverted), (route, inverted)
        assert any(c.startswith("centroid_") for c in shifted), (route, shifted)
        assert all(r["status"] == "ok" for r in response.json()["results"])  # a warning only
    metrics = client.get("/metrics").text
    counted = re.search(
        r'^clearsight_out_of_distribution_total\{check="mean_intensity"\} (\S+)', metrics, re.M
    )
    assert counted and float(counted[1]) >= 3, metrics[-2000:]


def test_answered_images_are_logged_with_their_request_id(
    client: httpx.Client, registry: Registry, digits
) -> None:
    images = cases(digits)
    plain = client.post(
        "/predict", json={"images": [array_item(images["clean"])], "explain": False}
    )
    explained = client.post("/predict", json={"images": [array_item(images["shifted"])]})
    ids = {plain.json()["request_id"]: "plain", explained.json()["request_id"]: "explained"}

    def logged():
        window = read_window(traffic_dir(registry))
        rows = {rid: i for i, rid in enumerate(window.request_ids) if rid in ids}
        return (window, rows) if len(rows) == 2 else None

    found = wait_for(logged)
    assert found, f"requests {sorted(ids)} not in {traffic_dir(registry)}"
    window, rows = found
    by_kind = {ids[rid]: row for rid, row in rows.items()}
    plain_row, explained_row = by_kind["plain"], by_kind["explained"]
    np.testing.assert_allclose(window.pixels[plain_row], images["clean"], atol=1 / 255)
    assert window.labels[plain_row] == plain.json()["results"][0]["label"]
    # The served version and its run, for the monitor to explain each image with the model
    # that answered it; nothing from the request's explanations (docs/monitoring.md).
    for row in (plain_row, explained_row):
        assert window.model_versions[row] == registry.version
        assert window.run_ids[row] == registry.run_id
    assert window.features["centroid_dx"][explained_row] > 2  # rolled 7 px (some wraps)


def test_the_monitors_latest_scores_reach_metrics(client: httpx.Client, registry: Registry) -> None:
    folder = traffic_dir(registry)
    folder.mkdir(parents=True, exist_ok=True)
    tests = {"ink_fraction": 7.5, "confidence": 0.1}
    DriftScores("3", None, "drift", drifted=True, tests=tests).write(folder)

    def shown():
        text = client.get("/metrics").text
        return 'clearsight_drift_score{test="ink_fraction"} 7.5' in text and text

    text = wait_for(shown)
    lines = [x for x in client.get("/metrics").text.splitlines() if "drift" in x]
    assert text, f"drift scores not in /metrics: {lines}"
    assert re.search(r"^clearsight_drift_detected 1\.0", text, re.M)
