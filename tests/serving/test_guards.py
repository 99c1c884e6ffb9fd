"""The scoped credentials and body limit middleware, on a small Starlette app (no model
needed); the same checks on the real service are in test_access.py."""

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

    def __init__(self, api_key: str | None, limit: int, **tokens: str | None) -> None:
        routes = [
            Route("/predict", echo, methods=["POST"]),
            Route("/feedback", echo, methods=["POST"]),
            Route("/admin/reload", echo, methods=["POST"]),
            Route("/metrics", health),
            Route("/readyz", health),
            Route("/v2/health/ready", health),
        ]
        guarded = Starlette(routes=routes)
        app = ServiceGuard(guarded, api_key=api_key, max_body_bytes=limit, **tokens)
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


def client(api_key: str | None, limit: int = 100, **tokens: str | None) -> GuardedClient:
    return GuardedClient(api_key, limit, **tokens)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 403),
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
    if status == 403:
        assert response.json()["code"] == "forbidden"
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


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("api_key", [None, "predict-key"])
def test_write_routes_need_their_own_scope(api_key: str | None) -> None:
    """/feedback and /admin/* never take an anonymous caller, the predict key, or each
    other's token; each opens with exactly its own (whether or not predict is open)."""
    http = client(api_key, feedback_token="fb-token", admin_token="admin-token")
    for path, own, other in [
        ("/feedback", "fb-token", "admin-token"),
        ("/admin/reload", "admin-token", "fb-token"),
    ]:
        anonymous = http.post(path, content=b"{}")
        assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthorized"
        assert "bearer" in anonymous.json()["error"]
        for wrong in [other, "predict-key", own + "x", own[:-1]]:
            refused = http.post(path, content=b"{}", headers=bearer(wrong))
            assert refused.status_code == 403, (path, wrong)
            assert refused.json()["code"] == "forbidden"
        assert http.post(path, content=b"{}", headers=bearer(own)).status_code == 200


def test_a_scope_without_a_token_refuses_everyone() -> None:
    """Unset feedback or admin tokens switch those routes off; they never fall back to open."""
    http = client(None)
    for path in ("/feedback", "/admin/reload"):
        assert http.post(path, content=b"{}").status_code == 401
        refused = http.post(path, content=b"{}", headers=bearer("anything"))
        assert refused.status_code == 403 and "switched off" in refused.json()["error"]
    assert http.post("/predict", content=b"{}").status_code == 200


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every comparison goes through hmac.compare_digest (no early exit on the first byte)."""
    import serving.guards as guards

    seen: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return a == b

    monkeypatch.setattr(guards.hmac, "compare_digest", spy)
    http = client("k1", feedback_token="f1", admin_token="a1")
    http.post("/predict", content=b"{}", headers=bearer("k2"))
    http.post("/feedback", content=b"{}", headers=bearer("f2"))
    http.post("/admin/reload", content=b"{}", headers=bearer("a2"))
    assert seen == [(b"k2", b"k1"), (b"f2", b"f1"), (b"a2", b"a1")]
