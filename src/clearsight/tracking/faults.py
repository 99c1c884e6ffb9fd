"""Which failures of the tracking store are worth another attempt, and how long MLflow's own
HTTP client waits before it gives up.

What MLflow 3 really raises when its server is gone (measured): ``MlflowException("API
request to ... failed with exception HTTPConnectionPool(...): Max retries exceeded")``, with
no ``__cause__`` and the ``requests.exceptions.ConnectionError`` only as its
``__context__``. ``requests``' errors derive from ``OSError``, so walking the chain finds it.
A server that answers but cannot reach its database answers 5xx, which the client raises as an
``MlflowException`` with a code such as ``TEMPORARILY_UNAVAILABLE`` and nothing underneath;
a SQLite or Postgres store used directly raises SQLAlchemy's ``OperationalError`` (a locked or
restarting database). All of these pass with time. Nothing else does: a missing model, a bad
parameter, a corrupted artifact, a ``ClearsightError``.

An HTTP answer is judged by its status: ``requests``' ``HTTPError`` is an ``OSError`` too, but
a 4xx (an artifact the server does not have: 404) fails the same way again, while a 5xx (a
proxy in front of a restarting server: 502, 503, 504) passes. MLflow reports a 5xx without a
JSON body as "API request to endpoint ... failed with error code 502 != 200".
"""

from __future__ import annotations

import os
import re

from mlflow.exceptions import MlflowException

from clearsight.errors import ClearsightError

# MLflow error codes of a store that is there but cannot answer right now.
TRANSIENT_CODES = frozenset(
    {
        "TEMPORARILY_UNAVAILABLE",
        "REQUEST_LIMIT_EXCEEDED",
        "SERVICE_UNDER_MAINTENANCE",
        "DEADLINE_EXCEEDED",
    }
)
# How MLflow's REST client words a 5xx answer that had no JSON body (a proxy's error page).
_SERVER_ERROR = re.compile(r"failed with error code 5\d\d\b")

# MLflow's defaults retry one HTTP call 7 times with backoff factor 2 and a 120 s timeout:
# minutes before a dead server surfaces. An orchestrator that retries whole steps wants a
# quicker verdict; these are set only where the user set nothing (``bounded_http_retries``).
BOUNDED_HTTP_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def _is_database_outage(error: BaseException) -> bool:
    """SQLAlchemy's ``OperationalError`` (by name: clearsight does not import SQLAlchemy)."""
    return any(
        cls.__name__ == "OperationalError" and cls.__module__.startswith("sqlalchemy")
        for cls in type(error).__mro__
    )


def _http_status(error: BaseException) -> int | None:
    """The status of the HTTP answer an error carries (``requests``' ``HTTPError``), if any."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def is_transient(error: BaseException | None) -> bool:
    """True when ``error`` (or an error it was raised from or during) is an I/O fault that can
    pass: ``OSError`` (connection refused or reset, a timeout, a full or flaky disk), an HTTP
    5xx, an MLflow error with a temporarily-unavailable code, a database outage. False at the
    first ``ClearsightError`` or HTTP 4xx in the chain: the same input fails the same way
    again."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ClearsightError):
            return False
        if (status := _http_status(error)) is not None:
            return status >= 500 or status in (408, 429)
        if isinstance(error, OSError) or _is_database_outage(error):
            return True
        if isinstance(error, MlflowException) and (
            error.error_code in TRANSIENT_CODES or _SERVER_ERROR.search(str(error))
        ):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def bounded_http_retries() -> None:
    """Cap MLflow's per-request HTTP retries (about 10 s to a verdict instead of minutes),
    unless the user chose values: the flow's own step retries then do the waiting."""
    for name, value in BOUNDED_HTTP_RETRIES.items():
        os.environ.setdefault(name, value)


def outage_line(error: BaseException) -> str | None:
    """One line for an I/O fault a user can only wait out or fix outside clearsight (a store
    that went away, a full disk), or None for any other error (a bug keeps its traceback)."""
    if not is_transient(error):
        return None
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return f"I/O fault ({type(error).__name__}); retry once it is fixed: {first}"
