"""Every failure a user can act on, in one light module (no third-party imports).

All of them derive from ``ClearsightError``, whose message is one line a person can act on,
so an entry point catches one class: the CLI prints the line and exits 1, the service answers
4xx, a flow fails its task with the message. Anything that is not a ``ClearsightError`` is a
bug and keeps its traceback.

Where an error used to be a built-in (``ValueError``, ``RuntimeError``), it still derives from
it too, so callers that caught the built-in keep working.
"""

from __future__ import annotations

from typing import Any


class ClearsightError(Exception):
    """An expected failure: the first line of the message says what to do about it."""

    def one_line(self) -> str:
        """The message's first line (the CLI prints this and nothing else)."""
        text = str(self)
        return text.splitlines()[0] if text else type(self).__name__


class ConfigurationError(ClearsightError, ValueError):
    """A setting or option that cannot work: an unknown name, a missing path."""


class BackendUnavailable(ClearsightError):
    """The chosen Keras backend (or its library) is not installed or cannot be switched to."""


class DataSourceError(ClearsightError, ValueError):
    """A source could not be read: the message names the file and the problem."""


class DataValidationError(ClearsightError):
    """The data broke the contract; ``report.failures`` lists every failed expectation."""

    def __init__(self, report: Any) -> None:
        self.report = report
        lines = [f"- {f.summary()}" for f in report.failures]
        super().__init__(
            f"data contract failed: {len(report.failures)} of {len(report.outcomes)} "
            "expectations\n" + "\n".join(lines)
        )


class TrainingError(ClearsightError, FloatingPointError):
    """Training could not produce a usable model (e.g. the loss diverged to NaN)."""


class RegistryError(ClearsightError, RuntimeError):
    """The model registry is not in a state the command can act on."""


class UnknownMethod(ConfigurationError):
    """An explanation method name that is not in the catalogue."""


class ImageError(ClearsightError, ValueError):
    """One image cannot be used (undecodable, wrong shape, NaN, out of range)."""


class ServiceError(ClearsightError, RuntimeError):
    """The prediction service could not be reached or refused a request."""


class RequestError(ClearsightError):
    """A request the server understood but cannot serve: status, machine code, one line.

    ``detail`` lists what exactly was wrong (per field or per image), so a client can fix its
    request without reading server logs. The HTTP layer turns it into a 4xx (or 503) answer.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: list[dict[str, Any]] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail or []
        self.retry_after_s = retry_after_s  # a 429: when the same request would be admitted

    def body(self) -> dict[str, Any]:
        """The JSON error body (``error`` is a string, as the Open Inference Protocol wants)."""
        return {"error": self.message, "code": self.code, "detail": self.detail}


class MonitorError(ClearsightError):
    """Nothing for the drift monitor to judge yet (too little traffic), or no champion."""


class RecordError(ClearsightError, ValueError):
    """A record file written by another version of clearsight, or not by it at all (drift
    scores): refused whole, with what was expected, rather than half read."""


class Terminated(SystemExit):
    """SIGTERM (a ``kill``, a container stop, a CI timeout) during a long command, raised in
    the main thread so every ``with`` block on the way out cleans up (a training run ends
    KILLED and registers nothing). Not a ``ClearsightError``: nothing to fix; the command
    exits 143, as a process killed by SIGTERM does."""

    def __init__(self) -> None:
        super().__init__(143)  # 128 + SIGTERM
