"""ASGI middleware in front of every route: scoped credentials and a request body limit.

It wraps the whole service (BentoML's own routes such as ``/metrics`` included), so a
forgotten route cannot bypass it. Health probes and the API docs stay open: orchestrators and
browsers cannot send a key, and neither reveals predictions.
"""

from __future__ import annotations

import hmac
from typing import Literal

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clearsight.errors import RequestError
from serving.errors import send_error

Access = Literal["predict", "feedback", "admin"]

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


def presented_key(scope: Scope) -> str | None:
    """The key from ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    headers = dict(scope.get("headers") or [])
    if key := headers.get(b"x-api-key"):
        return key.decode("latin-1")
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def scope_of(path: str) -> Access | None:
    """Which scope a path needs: None for the open probes, docs and page."""
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return None
    if path == "/feedback" or path.startswith("/feedback/"):
        return "feedback"
    if path.startswith("/admin/") or path == "/admin":
        return "admin"
    return "predict"


def matches(presented: str, expected: str | None) -> bool:
    """Constant-time comparison; an unset token matches nothing."""
    if expected is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


class ServiceGuard:
    """Each request's scope checked (401 without a credential, 403 with a wrong one), then its
    body bounded (413 past ``max_body_bytes``).

    Three scopes, each with its own secret: predict (``api_key``; open when unset), feedback
    and admin (bearer tokens; never open: unset, they refuse every caller). A token of one
    scope opens no other, so the predict key cannot reach /feedback or /admin/*.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_key: str | None,
        max_body_bytes: int,
        feedback_token: str | None = None,
        admin_token: str | None = None,
    ) -> None:
        self.app = app
        self.secrets: dict[Access, str | None] = {
            "predict": api_key,
            "feedback": feedback_token,
            "admin": admin_token,
        }
        self.max_body_bytes = max_body_bytes

    def refusal(self, scope: Scope) -> RequestError | None:
        """Why this request may not pass, or None."""
        needed = scope_of(scope["path"])
        if needed is None or (needed == "predict" and self.secrets["predict"] is None):
            return None
        presented = presented_key(scope)
        if presented is None:
            return RequestError(401, "unauthorized", f"the {needed} scope needs a bearer token")
        if not matches(presented, self.secrets[needed]):
            if self.secrets[needed] is None:
                why = f"the {needed} scope is switched off: no token is configured for it"
            else:
                why = f"this token does not grant the {needed} scope"
            return RequestError(403, "forbidden", why)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (refused := self.refusal(scope)) is not None:
            await send_error(send, refused)
            return
        limit = self.max_body_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_error(send, self._too_large())
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
                await send_error(send, self._too_large())

    def _too_large(self) -> RequestError:
        limit = self.max_body_bytes
        return RequestError(413, "payload_too_large", f"request body larger than {limit} bytes")
