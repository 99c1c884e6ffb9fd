"""Shed load at the door: a 503 with ``Retry-After`` once too many requests are in flight.

Why here and not in the batcher's bounded queue: on a CPU host the event loop, not the model,
saturates first (HTTP parsing, JSON decoding and validation of the image bodies). Requests
then wait in the kernel's accept queue, where no queue bound of ours can see them, until the
client times out (measured: 0 % shed, 54 % timed out at 4x capacity). Answering the excess
before its body is read makes a refused request cost a fraction of an admitted one, so the
loop keeps up with arrivals and the kernel queue stays short (with asyncio's loop:
``serving.event_loop``).

Why in front of the whole app (``FrontDoor``): BentoML adds its metrics, tracing and timeout
middlewares outside any middleware of a service and offers no outer hook, and a refusal that
passes them costs 37 us of the loop against 5 us for the shedder alone (measured in-process,
one core). Under a flood of new connections that difference decides how much of the loop is
left for the requests that were admitted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from clearsight.errors import RequestError
from serving.errors import send_error

logger = logging.getLogger(__name__)

# Probes and scrapes must reach an overloaded service: refusing them would get it restarted,
# or hide the overload from the dashboards. Everything else, pages and docs included, is shed.
NEVER_SHED = frozenset(
    {"/livez", "/readyz", "/healthz", "/v2/health/live", "/v2/health/ready", "/metrics"}
)


def never_shed(path: str) -> bool:
    """Health, readiness (OIP's per-model ``/v2/models/.../ready`` too) and metrics."""
    return path in NEVER_SHED or (path.startswith("/v2/models/") and path.endswith("/ready"))


class LoadShedder:
    """Answer 503 + ``Retry-After`` to a request that finds ``max_in_flight`` others in flight."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight: int,
        on_shed: Callable[[], None] | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.shed = 0
        self._on_shed = on_shed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or never_shed(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            self.shed += 1
            if self._on_shed is not None:
                self._on_shed()
            await send_error(send, OVERLOADED)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


# The same error body as every other refusal of the service (``RequestError``).
OVERLOADED = RequestError(
    503, "overloaded", "the service has too many requests in flight; retry shortly"
)


class FrontDoor(LoadShedder):
    """A ``LoadShedder`` that moves itself in front of the whole app when the app starts.

    Added like any service middleware, it sees the lifespan startup, where Starlette hands it
    the application (``scope["app"]``) with its middleware stack already built; it wraps that
    stack, so a refusal costs no BentoML middleware, and then only passes requests on. If the
    app has no such stack (another BentoML or Starlette), it sheds where it stands, with a
    warning: the refusals stay, only their cost grows. Refused requests are thus not in
    BentoML's own request metrics or traces; ``clearsight_shed_requests_total`` counts them.
    """

    front: LoadShedder | None = None  # the shedder it put in front, once there

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front is not None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "lifespan":
            self.front = self._in_front_of(scope.get("app"))
        await super().__call__(scope, receive, send)

    def _in_front_of(self, application: object) -> LoadShedder | None:
        stack = getattr(application, "middleware_stack", None)
        if stack is None:
            logger.warning(
                "load shedding stays behind BentoML's middlewares: %s has no middleware stack",
                type(application).__name__,
            )
            return None
        front = LoadShedder(stack, max_in_flight=self.max_in_flight, on_shed=self._on_shed)
        application.middleware_stack = front  # type: ignore[attr-defined]
        return front
