"""Which failures of the registry are worth another attempt: HTTP answers by their status."""

from __future__ import annotations

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import DEADLINE_EXCEEDED

from clearsight.errors import RegistryError
from clearsight.tracking.faults import is_transient


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status} answer", response=response)


def wrapped(inner: BaseException) -> MlflowException:
    """As MLflow's artifact download reports a failed HTTP call: the HTTP error as context."""
    try:
        raise inner
    except type(inner):
        try:
            raise MlflowException("Failed to download artifacts from path 'panel.npz'")
        except MlflowException as outer:
            return outer


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (http_error(502), True),  # a proxy in front of a restarting server
        (http_error(503), True),
        (http_error(429), True),
        (http_error(404), False),  # the artifact is not there: it will not appear by waiting
        (http_error(403), False),
        (wrapped(http_error(504)), True),
        (wrapped(http_error(404)), False),
        (wrapped(requests.ConnectionError("connection refused")), True),
        (wrapped(requests.Timeout("read timed out")), True),
        (MlflowException("API request to endpoint /x failed with error code 502 != 200."), True),
        (MlflowException("API request to endpoint /x failed with error code 404 != 200."), False),
        (MlflowException("deadline", error_code=DEADLINE_EXCEEDED), True),
        (MlflowException("Failed to download artifacts from path 'panel.npz'"), False),
        (RegistryError("v3 has no acceptance/panel.npz to check it with"), False),
    ],
    ids=repr,
)
def test_http_failures_are_transient_by_status(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient
