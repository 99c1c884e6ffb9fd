"""The load shedder on a small Starlette app: requests past the in-flight bound get 503 with
Retry-After at once; probes and metrics are never shed; a finished request frees its place."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from serving.shedding import LoadShedder


def shedder_app(gate: asyncio.Event, limit: int) -> LoadShedder:
    async def slow(_: Request) -> JSONResponse:
        await gate.wait()  # held in flight until the test opens the gate
        return JSONResponse({"ok": True})

    async def quick(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    routes = [
        Route("/predict", slow, methods=["POST"]),
        Route("/readyz", quick),
        Route("/metrics", quick),
        Route("/v2/models/m/ready", quick),
        Route("/docs.json", quick),
    ]
    return LoadShedder(
        Starlette(routes=routes), max_in_flight=limit, on_shed=lambda: SHEDS.append(1)
    )


SHEDS: list = []


def test_requests_past_the_bound_get_503_with_retry_after() -> None:
    SHEDS.clear()

    async def scenario() -> tuple[list[httpx.Response], list[httpx.Response], httpx.Response]:
        gate = asyncio.Event()
        app = shedder_app(gate, limit=3)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            held = [asyncio.create_task(http.post("/predict")) for _ in range(3)]
            async with asyncio.timeout(10):  # the three are admitted, waiting on the gate
                while app.in_flight < 3:
                    await asyncio.sleep(0.01)
            refused = [await http.post("/predict") for _ in range(2)]
            probes = [
                await http.get(path) for path in ("/readyz", "/metrics", "/v2/models/m/ready")
            ]
            page = await http.get("/docs.json")  # pages and docs are shed like the rest
            gate.set()
            admitted = await asyncio.gather(*held)
            after = await http.post("/predict")  # places are free again
        assert app.in_flight == 0 and app.shed == 3 and len(SHEDS) == 3
        assert all(p.status_code == 200 for p in probes)
        assert page.status_code == 503
        return admitted, refused, after

    admitted, refused, after = asyncio.run(scenario())
    assert [r.status_code for r in admitted] == [200, 200, 200]
    assert [r.status_code for r in refused] == [503, 503]
    assert all(r.headers["retry-after"] == "1" for r in refused)
    assert refused[0].json()["code"] == "overloaded"
    assert after.status_code == 200


def test_a_failing_request_frees_its_place() -> None:
    async def boom(_: Request) -> JSONResponse:
        raise RuntimeError("handler failed")

    app = LoadShedder(
        Starlette(routes=[Route("/predict", boom, methods=["POST"])]), max_in_flight=1
    )

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            for _ in range(3):
                assert (await http.post("/predict")).status_code == 500

    asyncio.run(scenario())
    assert app.in_flight == 0 and app.shed == 0


def test_the_bound_must_admit_something() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LoadShedder(Starlette(), max_in_flight=0)
