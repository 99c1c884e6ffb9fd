"""Shed load at the door: a 503 with ``Retry-After`` once too many requests are in flight.

Why here and not in the batcher's bounded queue: on a CPU host the event loop, not the model,
saturates first (HTTP parsing, JSON decoding and validation of the image bodies). Requests
then wait in the kernel's accept queue, where no queue bound of ours can see them, until the
client times out (measured: 0 % shed, 54 % timed out at 4x capacity). Counting requests from
the moment the outermost middleware sees them, and answering the excess before the body is
read, makes a refused request cost a fraction of an admitted one, so the loop keeps accepting
faster than requests arrive and the kernel queue stays short.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from serving.guards import OPEN_PATHS, OPEN_PREFIXES, send_json

NEVER_SHED = OPEN_PATHS | {"/metrics"}  # probes and scrapes must see an overloaded service


class LoadShedder:
    """Answer 503 + ``Retry-After`` to a request that finds ``max_in_flight`` others in flight."""

    def __init__(self, app: ASGIApp, *, max_in_flight: int, retry_after_s: int = 1) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.shed = 0
        self._retry_after = [(b"retry-after", str(retry_after_s).encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in NEVER_SHED or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            self.shed += 1
            await send_json(send, 503, OVERLOADED, self._retry_after)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


OVERLOADED = {
    "error": "the service has too many requests in flight; retry shortly",
    "code": "overloaded",
    "detail": [],
}
