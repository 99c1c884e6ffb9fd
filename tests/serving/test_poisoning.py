"""A poisoning run on the real service: 200 real digits the champion answered, sent back through
``POST /feedback`` with rotated labels, end in quarantine (with their PNG grid), not in a data
version; the same 200 correctly labelled become the next data version. A person sees the
quarantined batch in ``clearsight data review --json`` and rejects it.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from clearsight.config import DataSettings
from clearsight.data.ingest import ingest_pending
from clearsight.data.sources import load_embedded
from clearsight.data.versions import VersionStore
from tests.conftest import stores_under
from tests.serving.conftest import FEEDBACK, Registry, answered, run_cli

CONFIDENT = 0.9  # data.label_check_confidence's default


def _array(image: np.ndarray) -> dict:
    return {"kind": "array", "scale": "0-255", "data": image.astype(int).tolist()}


@pytest.mark.slow
def test_rotated_labels_are_quarantined_and_true_ones_become_a_version(
    client: httpx.Client, registry: Registry, digits, tmp_path: Path
) -> None:
    full = load_embedded()  # 200 real digits the champion never trained on (not in `digits`)
    index = np.concatenate([np.flatnonzero(full.labels == c)[40:60] for c in range(10)])
    images, labels = full.images[index], full.labels[index]
    served = answered(client, images)
    confident = served.confidences >= CONFIDENT
    # The check compares with the champion's confident answers: they must mean something.
    assert confident.sum() >= 50, f"only {confident.sum()} confident answers"
    assert (served.labels[confident] == labels[confident]).mean() >= 0.9

    # Ingest as the retrain flow would: the service's incoming folder, stores of our own,
    # on top of the 400-digit base the champion came from.
    base = tmp_path / "base.npz"
    np.savez(base, x_train=digits[0], y_train=digits[1])
    settings = stores_under(tmp_path, data=DataSettings(source="npz", path=base))
    settings = settings.model_copy(update={"incoming_dir": registry.settings.incoming_dir})
    env = {**registry.env, "CLEARSIGHT_DATA_DIR": str(tmp_path / "data")}

    def send(given: np.ndarray) -> str:
        body = {
            "images": [_array(im) for im in images],
            "labels": [int(v) for v in given],
            "request_ids": served.request_ids,
        }
        response = client.post("/feedback", json=body, headers=FEEDBACK)
        assert response.status_code == 202, response.text
        return response.json()["batch"]

    too_many = {"images": [_array(images[0])] * 257, "labels": [0] * 257, "request_id": "x"}
    refused = client.post("/feedback", json=too_many, headers=FEEDBACK)
    assert refused.status_code == 413 and refused.json()["code"] == "too_many_images"

    poisoned = send((labels + 1) % 10)
    result = ingest_pending(settings)
    [outcome] = [o for o in result.outcomes if o.batch == poisoned]
    assert not outcome.accepted and "over the 20% allowed" in outcome.reason
    assert not any(v.batch for v in VersionStore.of(settings).versions()), "no data version"
    assert outcome.quarantined_to is not None
    grid = Path(outcome.quarantined_to + ".labels.png")
    assert grid.read_bytes()[:4] == b"\x89PNG"

    listed = run_cli("data", "review", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["batch"] == poisoned and row["figure"] == str(grid)
    assert row["label_check"]["n_disagree"] >= 0.9 * confident.sum()

    honest = send(labels)
    [outcome] = [o for o in ingest_pending(settings).outcomes if o.batch == honest]
    try:
        assert outcome.accepted, outcome.reason
        newest = VersionStore.of(settings).versions()[-1]
        assert newest.id == outcome.version and newest.batch and newest.batch.name == honest
        assert newest.n_images == len(digits[0]) + 200
    finally:  # the service's incoming folder is shared with the other serving tests
        (registry.settings.incoming_dir / honest).unlink()  # type: ignore[operator]

    rejected = run_cli("data", "reject", poisoned, env=env)
    assert rejected.returncode == 0 and "rejected" in rejected.stdout, rejected.stderr
    again = run_cli("data", "review", "--json", env=env)
    assert again.returncode == 0 and json.loads(again.stdout) == []
