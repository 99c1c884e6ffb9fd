"""ASGI middleware in front of every route: an optional API key and a request body limit.

It wraps the whole service (BentoML's own routes such as ``/metrics`` included), so a
forgotten route cannot bypass it. Health probes and the API docs stay open: orchestrators and
browsers cannot send a key, and neither reveals predictions.
"""

from __future__ import annotations

import hmac
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPEN_PATHS = frozenset(
    {
        "/livez",
        "/readyz",
        "/healthz",
        "/v2/health/live",
        "/v2/health/ready",
        "/",
        "/docs.json",
        "/openapi.json",
        "/ui",
    }
)
OPEN_PREFIXES = ("/static_content/", "/assets/", "/ui/")


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes the limit; answered with 413.

    An ``HTTPException`` so that FastAPI's body parsing passes it on instead of turning it
    into "There was an error parsing the body" (400).
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


async def send_json(send: Send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def presented_key(scope: Scope) -> str | None:
    """The key from ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    headers = dict(scope.get("headers") or [])
    if key := headers.get(b"x-api-key"):
        return key.decode("latin-1")
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class ServiceGuard:
    """Refuse requests without the API key (401) and bodies over ``max_body_bytes`` (413)."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes

    def _open(self, path: str) -> bool:
        return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.api_key and not self._open(scope["path"]):
            key = presented_key(scope)
            if key is None or not hmac.compare_digest(key.encode(), self.api_key.encode()):
                await send_json(
                    send,
                    401,
                    {"error": "missing or invalid API key", "code": "unauthorized", "detail": []},
                    [(b"www-authenticate", b"Bearer")],
                )
                return
        limit = self.max_body_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_json(send, 413, self._too_large())
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await send_json(send, 413, self._too_large())

    def _too_large(self) -> dict:
        return {
            "error": f"request body larger than {self.max_body_bytes} bytes",
            "code": "payload_too_large",
            "detail": [],
        }
