"""The load shedder on a small Starlette app: requests past the in-flight bound get 503 with
Retry-After at once; probes and metrics are never shed; a finished request frees its place."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from serving.shedding import FrontDoor, LoadShedder


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


class CountingMiddleware:
    """Stands for BentoML's metrics, tracing and timeout middlewares: outside any middleware
    of a service, counting the HTTP requests that pass it."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            PASSED.append(scope["path"])
        await self.app(scope, receive, send)


PASSED: list[str] = []


async def started(app: Starlette) -> tuple[asyncio.Task, asyncio.Queue]:
    """Run the app's lifespan startup, as uvicorn does before it accepts a connection."""
    inbox: asyncio.Queue = asyncio.Queue()
    events: list[str] = []
    await inbox.put({"type": "lifespan.startup"})

    async def send(message) -> None:
        events.append(message["type"])

    lifespan = asyncio.create_task(app({"type": "lifespan", "state": {}}, inbox.get, send))
    async with asyncio.timeout(10):
        while "lifespan.startup.complete" not in events:
            await asyncio.sleep(0.01)
    return lifespan, inbox


def test_the_front_door_refuses_before_the_outer_middlewares() -> None:
    """After startup the shedder stands in front of every middleware: a refusal never reaches
    the outer (BentoML's) ones, an admitted request passes them as before."""
    PASSED.clear()
    gate = asyncio.Event()

    async def slow(_: Request) -> JSONResponse:
        await gate.wait()
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[Route("/predict", slow, methods=["POST"])],
        middleware=[Middleware(CountingMiddleware), Middleware(FrontDoor, max_in_flight=1)],
    )

    async def scenario() -> tuple[int, int]:
        lifespan, inbox = await started(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            held = asyncio.create_task(http.post("/predict"))
            async with asyncio.timeout(10):
                while not PASSED:
                    await asyncio.sleep(0.01)
            refused = await http.post("/predict")
            gate.set()
            admitted = await held
        await inbox.put({"type": "lifespan.shutdown"})
        await lifespan
        return admitted.status_code, refused.status_code

    assert asyncio.run(scenario()) == (200, 503)
    assert PASSED == ["/predict"]  # the admitted one only
    assert isinstance(app.middleware_stack, LoadShedder) and app.middleware_stack.shed == 1


def test_the_front_door_sheds_in_place_without_a_middleware_stack(caplog) -> None:
    """An app that exposes no middleware stack keeps the shedder where it was added, with a
    warning: refusals stay, they only cost more."""
    gate = asyncio.Event()
    door = FrontDoor(shedder_app(gate, limit=1).app, max_in_flight=1)

    async def scenario() -> int:
        async def receive() -> dict:
            raise asyncio.CancelledError  # the startup is not the point here

        with pytest.raises(asyncio.CancelledError):
            await door({"type": "lifespan", "state": {}, "app": object()}, receive, None)
        transport = httpx.ASGITransport(app=door)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            held = asyncio.create_task(http.post("/predict"))
            async with asyncio.timeout(10):
                while door.in_flight < 1:
                    await asyncio.sleep(0.01)
            refused = await http.post("/predict")
            gate.set()
            await held
        return refused.status_code

    assert asyncio.run(scenario()) == 503
    assert door.front is None and door.shed == 1
    assert "stays behind BentoML's middlewares" in caplog.text
