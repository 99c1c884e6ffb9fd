"""Shed load at the door: a 503 with ``Retry-After`` once too many requests are in flight.

Why here and not in the batcher's bounded queue: on a CPU host the event loop, not the model,
saturates first (HTTP parsing, JSON decoding and validation of the image bodies). Requests
then wait in the kernel's accept queue, where no queue bound of ours can see them, until the
client times out (measured: 0 % shed, 54 % timed out at 4x capacity). Counting requests as
soon as the service's own middlewares see them (after BentoML's metrics and timeout
middlewares, which it adds outside any user middleware) and answering the excess before the
body is read makes a refused request cost a fraction of an admitted one, so the loop keeps up
with arrivals and the kernel queue stays short (with asyncio's loop: ``serving.event_loop``).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from clearsight.errors import RequestError
from serving.errors import send_error

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
