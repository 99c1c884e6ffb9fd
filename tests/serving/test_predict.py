"""Predictions and explanations over HTTP equal the library's, offline."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from clearsight.explain import decode_map, explain

from .conftest import REPO, Registry, Server, offline_probabilities

pytestmark = pytest.mark.slow


def png_base64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def as_array_item(image: np.ndarray, scale: str) -> dict:
    values = image.astype(float) if scale == "0-255" else image / 255.0
    return {"kind": "array", "scale": scale, "data": values.tolist()}


def test_predictions_equal_the_model_offline(client: httpx.Client, server: Server, digits) -> None:
    images, labels = digits
    batch = images[::40][:10]  # one digit of each class
    items = [as_array_item(img, "0-1") for img in batch[:4]]
    items += [as_array_item(img, "0-255") for img in batch[4:7]]
    items += [{"kind": "base64", "data": png_base64(img)} for img in batch[7:]]
    response = client.post("/predict", json={"images": items, "explain": False})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    expected = offline_probabilities(server.model, batch.astype(np.float32) / 255.0)
    served = np.array([r["probabilities"] for r in results])
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert [r["label"] for r in results] == expected.argmax(axis=1).tolist()
    assert all(r["status"] == "ok" and r["explanations"] == [] for r in results)
    assert [r["index"] for r in results] == list(range(10))
    assert np.mean(np.array([r["label"] for r in results]) == labels[::40][:10]) >= 0.7


def test_uploaded_files_are_answered_like_base64(
    client: httpx.Client, server: Server, digits
) -> None:
    images, _ = digits
    files = [
        ("images", (f"{i}.png", base64.b64decode(png_base64(images[i])), "image/png"))
        for i in (0, 200)
    ]
    response = client.post("/predict", files=files, data={"explain": "false"})
    assert response.status_code == 200, response.text
    expected = offline_probabilities(server.model, images[[0, 200]].astype(np.float32) / 255.0)
    served = np.array([r["probabilities"] for r in response.json()["results"]])
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_default_explanations_equal_the_library(
    client: httpx.Client, server: Server, digits
) -> None:
    images, _ = digits
    batch = images[[3, 123, 301]]
    x = batch.astype(np.float32) / 255.0
    response = client.post("/predict", json={"images": [as_array_item(i, "0-255") for i in batch]})
    assert response.status_code == 200, response.text
    body = response.json()
    for method, library_name in (
        ("integrated_gradients", "integrated_gradients"),
        ("grad_cam", "grad_cam"),
    ):
        offline = explain(server.model, x, library_name)
        for row, result in enumerate(body["results"]):
            (served,) = [e for e in result["explanations"] if e["method"] == method]
            assert served["requested_method"] == method
            assert served["target"] == result["label"] == int(offline.targets[row])
            assert served["shape"] == [28, 28] and served["dtype"] == "float16"
            values = decode_map(served)
            peak = float(np.abs(offline.maps[row]).max())
            np.testing.assert_allclose(values, offline.maps[row], atol=5e-3 * peak + 1e-6)
            assert served["timing"]["compute_ms"] > 0
            quality = served["quality"]
            if method == "integrated_gradients":
                assert served["params"]["rule"] == "adaptive"
                np.testing.assert_allclose(
                    quality["attribution_sum"], offline.attribution_sum[row], rtol=1e-3, atol=1e-3
                )
                np.testing.assert_allclose(
                    quality["completeness_gap"], offline.completeness_gap[row], atol=1e-3
                )
                assert quality["instance_output"] - quality["baseline_output"] == pytest.approx(
                    float(offline.instance_output[row] - offline.baseline_output[row]), abs=1e-3
                )
            else:
                assert set(quality.values()) == {None}
    assert set(body["timing"]["methods_ms"]) == {"integrated_gradients", "grad_cam"}


def test_a_smaller_target_gap_gives_more_complete_integrated_gradients(
    client: httpx.Client, digits
) -> None:
    """``parameters.integrated_gradients.target_gap`` reaches the adaptive rule: each map's
    completeness gap is at most the target (or the rule used all its 32 evaluations)."""
    images, _ = digits
    items = [as_array_item(i, "0-255") for i in images[[3, 123, 301, 50]]]

    def gaps(parameters: dict) -> list[float]:
        explain = {"methods": ["integrated_gradients"], "parameters": parameters}
        response = client.post("/predict", json={"images": items, "explain": explain})
        assert response.status_code == 200, response.text
        found = [r["explanations"][0] for r in response.json()["results"]]
        assert all(
            e["params"]["target_gap"]
            == parameters.get("integrated_gradients", {}).get("target_gap", 1e-3)
            for e in found
        )
        return [e["quality"]["completeness_gap"] for e in found]

    default, tight = gaps({}), gaps({"integrated_gradients": {"target_gap": 2e-4}})
    assert all(g <= 1e-3 for g in default)
    assert sum(tight) < sum(default)
    refused = client.post(
        "/predict",
        json={
            "images": items[:1],
            "explain": {"parameters": {"integrated_gradients": {"steps": 8, "target_gap": 1e-4}}},
        },
    )
    assert refused.status_code == 400 and "not both" in refused.text


def test_options_choose_methods_targets_and_encodings(
    client: httpx.Client, server: Server, digits
) -> None:
    images, _ = digits
    item = {"kind": "base64", "data": png_base64(images[50])}
    options = {
        "methods": ["saliency", "smoothgrad", "occlusion", "shap"],
        "targets": "explicit",
        "classes": [1, 7],
        "encodings": ["png_heatmap", "png_overlay"],
        "parameters": {"smoothgrad": {"samples": 8}, "shap": {"nsamples": 8}},
    }
    response = client.post("/predict", json={"images": [item], "explain": options})
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["status"] == "ok", result
    got = [(e["method"], e["target"]) for e in result["explanations"]]
    assert got == [(m, c) for m in options["methods"] for c in (1, 7)]
    for e in result["explanations"]:
        assert e["data"] is None
        for key in ("png_heatmap", "png_overlay"):
            with Image.open(io.BytesIO(base64.b64decode(e[key]))) as png:
                assert png.format == "PNG" and png.size == (224, 224)
    smooth = next(e for e in result["explanations"] if e["method"] == "smoothgrad")
    assert smooth["params"]["samples"] == 8

    top = client.post(
        "/predict",
        json={"images": [item], "explain": {"targets": "top-k", "k": 3, "methods": ["saliency"]}},
    )
    (result,) = top.json()["results"]
    probabilities = np.array(result["probabilities"])
    assert [e["target"] for e in result["explanations"]] == np.argsort(-probabilities)[:3].tolist()


def test_a_tight_budget_substitutes_a_cheaper_method(client: httpx.Client, digits) -> None:
    images, _ = digits
    items = [as_array_item(img, "0-255") for img in images[:8]]
    options = {"methods": ["occlusion", "grad_cam"], "budget_ms": 1}
    response = client.post("/predict", json={"images": items, "explain": options})
    assert response.status_code == 200, response.text
    for result in response.json()["results"]:
        assert result["status"] == "degraded"
        occlusion = result["explanations"][0]
        assert occlusion["requested_method"] == "occlusion" and occlusion["method"] == "saliency"
        assert any("occlusion replaced by saliency" in w for w in result["warnings"])


def test_one_bad_image_does_not_fail_the_batch(client: httpx.Client, digits) -> None:
    images, _ = digits
    good = as_array_item(images[0], "0-255")
    nan = {"kind": "array", "scale": "0-1", "data": [[float("nan")] * 28] * 28}
    body = {
        "images": [good, {"kind": "base64", "data": "bm90IGFuIGltYWdl"}, good],
        "explain": False,
    }
    response = client.post("/predict", json=body)
    statuses = [r["status"] for r in response.json()["results"]]
    assert statuses == ["ok", "error", "ok"]
    assert "PNG or JPEG" in response.json()["results"][1]["error"]
    raw = json.dumps({"images": [good, nan], "explain": False})  # NaN: Python's JSON allows it
    response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert [r["status"] for r in response.json()["results"]] == ["ok", "error"]
    assert "NaN" in response.json()["results"][1]["error"]


def test_metadata_names_the_registry_champion(
    client: httpx.Client, registry: Registry, built
) -> None:
    from .conftest import RUN_TAGS

    response = client.get("/metadata")
    assert response.status_code == 200
    meta = response.json()
    assert meta["name"] == registry.settings.tracking.registered_model
    assert meta["version"] == registry.version and meta["run_id"] == registry.run_id
    assert meta["registry_alias"] == "champion"
    assert meta["bento_model"] == built.model_tag
    assert meta["data_digests"] == {
        k.removeprefix("data_digest."): v
        for k, v in RUN_TAGS.items()
        if k.startswith("data_digest.")
    }
    assert meta["data_contract_hash"] == RUN_TAGS["data_contract_hash"]
    assert meta["class_names"] == [str(d) for d in range(10)]
    assert meta["explainer"]["methods"] == ["integrated_gradients", "grad_cam"]
    assert set(meta["explainer"]["measured_ms_per_image"]) == set(
        meta["explainer"]["available_methods"]
    )


def test_health_metrics_and_docs(client: httpx.Client) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics").text
    assert 'clearsight_explanation_duration_seconds_count{method="integrated_gradients"}' in metrics
    assert "clearsight_forward_batch_size_count" in metrics
    assert 'clearsight_images_total{status="ok"}' in metrics
    spec = client.get("/docs.json").json()
    assert {"/predict", "/metadata", "/v2/models/{name}/infer"} <= set(spec["paths"])
    content = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(content)
    assert {"default", "array", "custom"} <= set(content["application/json"]["examples"])


def test_web_page_is_served_when_present(client: httpx.Client) -> None:
    if not (REPO / "serving" / "ui" / "index.html").is_file():
        pytest.skip("no serving/ui in this checkout")
    page = client.get("/ui/")
    assert page.status_code == 200 and "<html" in page.text.lower()


def test_swagger_examples_run(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    examples = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ]
    for name, example in examples.items():
        response = client.post("/predict", json=example["value"])
        assert response.status_code == 200, (name, response.text)
        assert response.json()["results"][0]["label"] == 7
