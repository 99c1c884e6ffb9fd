"""POST /activations: the layers the web page draws, equal to the offline computation."""

import base64
import io

import httpx
import numpy as np
from PIL import Image

from clearsight.explain import activations
from clearsight.inference.schemas import EXAMPLE_PNG_BASE64

from .conftest import Server


def test_activations_of_every_conv_and_pool_layer(server: Server) -> None:
    response = httpx.post(
        f"{server.url}/activations",
        json={"image": {"kind": "base64", "data": EXAMPLE_PNG_BASE64}},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    layers = {layer["name"]: layer for layer in response.json()["layers"]}
    assert list(layers) == ["conv1", "pool1", "conv2", "pool2"]
    digit = np.asarray(Image.open(io.BytesIO(base64.b64decode(EXAMPLE_PNG_BASE64))), np.float32)
    offline = activations(server.model, (digit / 255.0)[None, ..., None])
    for name, layer in layers.items():
        assert layer["shape"] == list(offline[name].shape[1:])
        png = Image.open(io.BytesIO(base64.b64decode(layer["png"])))
        assert png.format == "PNG" and png.width > png.height > 0


def test_activations_of_an_unreadable_image_is_a_422(server: Server) -> None:
    response = httpx.post(
        f"{server.url}/activations",
        json={"image": {"kind": "base64", "data": "bm90IGFuIGltYWdl"}},
        timeout=30,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "bad_image"
    assert server.alive()
