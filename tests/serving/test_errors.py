"""Bad input gets a 4xx with a JSON error naming the problem, and the server keeps serving."""

from __future__ import annotations

import json

import httpx
import pytest

from .conftest import Server

pytestmark = pytest.mark.slow

ZEROS = [[0.0] * 28 for _ in range(28)]


def array(data: object = ZEROS, scale: str = "0-1") -> dict:
    return {"kind": "array", "scale": scale, "data": data}


BAD_REQUESTS = {
    # name: (body, status, code, words the error must contain)
    "wrong shape": ({"images": [array([[0.0] * 27] * 28)]}, 422, "invalid_image", "shape"),
    "wrong dtype": ({"images": [array([["x"] * 28] * 28)]}, 400, "invalid_request", "valid number"),
    "booleans": ({"images": [array([[True] * 28] * 28)]}, 400, "invalid_request", "valid number"),
    "out of range": ({"images": [array([[2.0] * 28] * 28)]}, 422, "invalid_image", "[0, 1]"),
    "no scale": ({"images": [{"kind": "array", "data": ZEROS}]}, 400, "invalid_request", "scale"),
    "undecodable": (
        {"images": [{"kind": "base64", "data": "aGVsbG8="}]},
        422,
        "invalid_image",
        "PNG or JPEG",
    ),
    "not base64": ({"images": [{"kind": "base64", "data": "@@@"}]}, 422, "invalid_image", "base64"),
    "unknown kind": ({"images": [{"kind": "tiff", "data": "x"}]}, 400, "invalid_request", "kind"),
    "empty batch": ({"images": []}, 400, "invalid_request", "at least 1"),
    "too many": ({"images": [array()] * 65}, 400, "invalid_request", "at most 64"),
    "unknown method": (
        {"images": [array()], "explain": {"methods": ["lime"]}},
        400,
        "invalid_request",
        "integrated_gradients",
    ),
    "unknown class": (
        {"images": [array()], "explain": {"targets": "explicit", "classes": [10]}},
        400,
        "invalid_request",
        "no class 10; this model has classes 0-9",
    ),
    "explicit without classes": (
        {"images": [array()], "explain": {"targets": "explicit"}},
        400,
        "invalid_request",
        "classes",
    ),
    "unknown option": (
        {"images": [array()], "explain": {"method": "saliency"}},
        400,
        "invalid_request",
        "method",
    ),
    "bad parameter": (
        {
            "images": [array()],
            "explain": {"parameters": {"integrated_gradients": {"steps": 10**6}}},
        },
        400,
        "invalid_request",
        "steps",
    ),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_input_is_a_named_4xx(client: httpx.Client, name: str) -> None:
    body, status, code, words = BAD_REQUESTS[name]
    response = client.post("/predict", json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["code"] == code
    assert words in error["error"], error


@pytest.mark.parametrize(
    ("content", "content_type", "words"),
    [
        (
            '{"images": [{"kind": "array", "scale": "0-1", "data": [[NaN]]}]}',
            "application/json",
            "NaN",
        ),
        ("{not json", "application/json", "JSON"),
        ("", "application/json", "Field required"),
    ],
)
def test_malformed_bodies(
    client: httpx.Client, content: str, content_type: str, words: str
) -> None:
    if words == "NaN":  # a full 28x28 image with one NaN
        rows = [[0.0] * 28 for _ in range(28)]
        content = json.dumps({"images": [array(rows)]}).replace("0.0", "NaN", 1)
    response = client.post("/predict", content=content, headers={"content-type": content_type})
    assert 400 <= response.status_code < 500, response.text
    assert words in response.json()["error"]


def test_oversized_body_is_413_and_multipart_errors_are_4xx(client: httpx.Client) -> None:
    response = client.post(
        "/predict", content=b"0" * (9 * 1024 * 1024), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
    response = client.post("/predict", files=[("images", ("x.png", b"junk", "image/png"))])
    assert response.status_code == 422 and response.json()["code"] == "invalid_image"
    response = client.post(
        "/predict", data={"images": "not a file"}, files=[("other", ("x", b"", "text/plain"))]
    )
    assert response.status_code == 400
    response = client.post(
        "/predict", files=[("images", ("x.png", b"", "image/png"))], data={"explain": "{oops"}
    )
    assert response.status_code == 400 and "explain" in response.json()["error"]


def test_wrong_routes_and_methods(client: httpx.Client) -> None:
    assert client.get("/predict").status_code == 405
    assert client.get("/nowhere").status_code == 404


def test_the_server_keeps_serving(client: httpx.Client, server: Server) -> None:
    for body, *_ in BAD_REQUESTS.values():
        client.post("/predict", json=body)
    assert server.alive()
    response = client.post("/predict", json={"images": [array()], "explain": False})
    assert response.status_code == 200
    assert "Traceback" not in server.log.read_text()
