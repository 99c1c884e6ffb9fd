"""The one way a refusal becomes an HTTP answer: the same JSON body and headers on every
route, in every middleware, and from the typed BentoML APIs."""

from __future__ import annotations

import json
import math

from starlette.responses import JSONResponse
from starlette.types import Send

from clearsight.errors import RequestError

RETRY_AFTER_S = 1


def error_headers(err: RequestError) -> dict[str, str]:
    """A 503 (warming up, overloaded) or 429 (a caller's limit) says when to retry; a 401
    which scheme to use."""
    if err.retry_after_s is not None:
        return {"Retry-After": str(max(1, math.ceil(err.retry_after_s)))}
    if err.status == 503:
        return {"Retry-After": str(RETRY_AFTER_S)}
    if err.status == 401:
        return {"WWW-Authenticate": "Bearer"}
    return {}


def error_response(err: RequestError) -> JSONResponse:
    """The refusal as a Starlette response (routes, exception handlers, typed APIs)."""
    return JSONResponse(err.body(), status_code=err.status, headers=error_headers(err) or None)


async def send_error(send: Send, err: RequestError) -> None:
    """The same refusal sent from ASGI middleware, before any route runs."""
    data = json.dumps(err.body()).encode()
    headers = [(k.lower().encode(), v.encode()) for k, v in error_headers(err).items()]
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
