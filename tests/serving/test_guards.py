"""The API key and body limit middleware, on a small Starlette app (no model needed)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from serving.guards import ServiceGuard


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"bytes": len(await request.body())})


async def health(_: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


class GuardedClient:
    """Synchronous calls into the guarded ASGI app (httpx's ASGI transport, no server)."""

    def __init__(self, api_key: str | None, limit: int) -> None:
        routes = [
            Route("/predict", echo, methods=["POST"]),
            Route("/metrics", health),
            Route("/readyz", health),
            Route("/v2/health/ready", health),
        ]
        app = ServiceGuard(Starlette(routes=routes), api_key=api_key, max_body_bytes=limit)
        self.transport = httpx.ASGITransport(app=app)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            async with httpx.AsyncClient(transport=self.transport, base_url="http://test") as http:
                return await http.request(method, path, **kwargs)

        return asyncio.run(send())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)


def client(api_key: str | None, limit: int = 100) -> GuardedClient:
    return GuardedClient(api_key, limit)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Basic s3cret"}, 401),
        ({"Authorization": "Bearer s3cret"}, 200),
        ({"X-API-Key": "s3cret"}, 200),
    ],
)
def test_api_key_guards_everything_but_health(headers: dict, status: int) -> None:
    http = client("s3cret")
    response = http.post("/predict", content=b"{}", headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.json()["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    assert http.get("/metrics", headers=headers).status_code == status
    assert http.get("/readyz").status_code == 200
    assert http.get("/v2/health/ready").status_code == 200


def test_no_key_configured_means_open() -> None:
    assert client(None).post("/predict", content=b"{}").status_code == 200


def test_body_limit_with_and_without_content_length() -> None:
    http = client(None, limit=100)
    assert http.post("/predict", content=b"x" * 100).json() == {"bytes": 100}
    response = http.post("/predict", content=b"x" * 101)
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"

    async def chunks():  # a streamed body: no content-length header
        yield b"x" * 60
        yield b"x" * 60

    chunked = http.post("/predict", content=chunks())
    assert chunked.status_code == 413
