"""200 concurrent mixed requests all succeed, and concurrent forward passes are batched."""

from __future__ import annotations

import asyncio
import base64
import io
import re

import httpx
import pytest
from PIL import Image

from .conftest import Server

pytestmark = pytest.mark.slow


def batch_count(metrics: str) -> tuple[float, float]:
    """(forward passes, images) from the batch-size histogram."""
    count = float(re.search(r"^clearsight_forward_batch_size_count (\S+)", metrics, re.M)[1])
    total = float(re.search(r"^clearsight_forward_batch_size_sum (\S+)", metrics, re.M)[1])
    return count, total


def test_200_concurrent_mixed_requests(server: Server, digits) -> None:
    images, _ = digits
    buffer = io.BytesIO()
    Image.fromarray(images[7]).save(buffer, format="PNG")
    png = base64.b64encode(buffer.getvalue()).decode()
    bodies = []
    for i in range(200):
        image = images[i % len(images)]
        kind = i % 4
        if kind == 0:  # prediction only, array
            bodies.append(
                {
                    "images": [{"kind": "array", "scale": "0-255", "data": image.tolist()}],
                    "explain": False,
                }
            )
        elif kind == 1:  # default explanation, PNG
            bodies.append({"images": [{"kind": "base64", "data": png}]})
        elif kind == 2:  # a batch of 4, cheap explanation
            items = [
                {"kind": "array", "scale": "0-255", "data": img.tolist()}
                for img in images[i : i + 4]
            ]
            bodies.append({"images": items, "explain": {"methods": ["grad_cam"]}})
        else:  # one bad image among good ones
            bodies.append(
                {
                    "images": [{"kind": "base64", "data": "eA=="}, {"kind": "base64", "data": png}],
                    "explain": False,
                }
            )

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as http:
            return await asyncio.gather(*(http.post("/predict", json=b) for b in bodies))

    before = batch_count(httpx.get(f"{server.url}/metrics").text)
    responses = asyncio.run(run())
    after = batch_count(httpx.get(f"{server.url}/metrics").text)
    assert [r.status_code for r in responses] == [200] * 200, {
        r.status_code: r.text[:200] for r in responses
    }
    for i, response in enumerate(responses):
        statuses = [r["status"] for r in response.json()["results"]]
        assert statuses == (["error", "ok"] if i % 4 == 3 else ["ok"] * len(bodies[i]["images"]))
    passes, images_forwarded = after[0] - before[0], after[1] - before[1]
    assert images_forwarded == 50 + 50 + 200 + 50
    assert passes < 200, f"{passes} forward passes for 200 requests: no batching"
    assert server.alive()
