"""Digits as people make them, dark on light, are answered like their light-on-dark originals,
and each result says what was done to the image (``preprocessing``)."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from .conftest import Server, offline_probabilities

pytestmark = pytest.mark.slow

ENCODINGS = [("PNG", 28), ("PNG", 112), ("JPEG", 28), ("JPEG", 112)]


def one_per_class(digits) -> np.ndarray:
    images, labels = digits
    return np.stack([images[np.flatnonzero(labels == c)[0]] for c in range(10)])


def sized(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def encoded(image: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def item(data: bytes) -> dict:
    return {"kind": "base64", "data": base64.b64encode(data).decode()}


def steps(result: dict) -> list[str]:
    return [step.split(":")[0] for step in result["preprocessing"]]


@pytest.mark.parametrize(("fmt", "size"), ENCODINGS)
def test_dark_on_light_digits_get_their_originals_labels(
    client: httpx.Client, server: Server, digits, fmt: str, size: int
) -> None:
    light = [sized(image, size) for image in one_per_class(digits)]  # as MNIST: light on dark
    dark = [255 - image for image in light]  # as people write: dark on light
    items = [item(encoded(image, fmt)) for image in light + dark]
    response = client.post("/predict", json={"images": items, "explain": False})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    originals, inverted = results[:10], results[10:]
    assert [r["label"] for r in inverted] == [r["label"] for r in originals]
    fitted = ["fitted"] if size != 28 else []
    assert [steps(r) for r in originals] == [fitted] * 10
    assert [steps(r) for r in inverted] == [["inverted", *fitted]] * 10
    assert all("dark digit on light background" in r["preprocessing"][0] for r in inverted)
    if fmt == "PNG":  # lossless: the inversion is undone exactly, so are the probabilities
        np.testing.assert_allclose(
            [r["probabilities"] for r in inverted],
            [r["probabilities"] for r in originals],
            atol=1e-5,
        )
    if size == 28 and fmt == "PNG":  # and a 28x28 original is what the model sees offline
        x = np.stack(light).astype(np.float32) / 255.0
        served = [r["probabilities"] for r in originals]
        np.testing.assert_allclose(served, offline_probabilities(server.model, x), atol=1e-5)


def test_uploaded_dark_on_light_files_are_inverted(client: httpx.Client, digits) -> None:
    light = [sized(image, 140) for image in one_per_class(digits)[:4]]
    files = [
        ("images", (f"{i}.jpg", encoded(image, "JPEG"), "image/jpeg"))
        for i, image in enumerate(light + [255 - image for image in light])
    ]
    response = client.post("/predict", files=files, data={"explain": "false"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["label"] for r in results[4:]] == [r["label"] for r in results[:4]]
    assert [steps(r) for r in results] == [["fitted"]] * 4 + [["inverted", "fitted"]] * 4


def test_arrays_are_taken_as_given(client: httpx.Client, digits) -> None:
    """Numbers declare their scale; an inverted array is the caller's choice, not repaired."""
    light = one_per_class(digits)[:3]
    items = [
        {"kind": "array", "scale": "0-255", "data": image.astype(float).tolist()}
        for image in [*light, *(255 - light)]
    ]
    response = client.post("/predict", json={"images": items, "explain": False})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert all(r["preprocessing"] == [] for r in results)
    probabilities = np.array([r["probabilities"] for r in results])
    assert not np.allclose(probabilities[:3], probabilities[3:], atol=1e-3)


def test_the_api_documents_preprocessing(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    field = spec["components"]["schemas"]["ImageResult"]["properties"]["preprocessing"]
    assert field["type"] == "array" and "inverted" in field["description"]
    polarity = client.get("/metadata").json()["input"]["polarity"]
    assert "inverted" in polarity
