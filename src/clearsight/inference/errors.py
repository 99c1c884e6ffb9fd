"""The one exception the serving layer turns into a 4xx JSON answer."""

from __future__ import annotations

from typing import Any


class RequestError(Exception):
    """A request the server understood but cannot serve: status, machine code, one-line message.

    ``detail`` lists what exactly was wrong (per field or per image), so a client can fix its
    request without reading server logs. The server keeps serving: nothing here is a 5xx.
    """

    def __init__(
        self, status: int, code: str, message: str, detail: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail or []

    def body(self) -> dict[str, Any]:
        """The JSON error body (``error`` is a string, as the Open Inference Protocol wants)."""
        return {"error": self.message, "code": self.code, "detail": self.detail}


class ServiceError(RuntimeError):
    """The service could not be reached or refused a request (one-line message)."""
