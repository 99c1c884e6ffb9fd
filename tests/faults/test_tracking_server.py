"""Row 2 of "What survives what": the MLflow tracking server goes away, then comes back.

A real ``mlflow server`` (SQLite backend, proxied artifacts, temporary folder) in its own
process group. MLflow's client raises ``MlflowException("API request ... failed with
exception HTTPConnectionPool ...")`` with the ``requests`` error only as ``__context__``: the
retry predicate must see through that (unit test below), and MLflow's own HTTP retries (7,
backoff factor 2, 120 s timeout by default: minutes) are capped here as the flow caps them.
"""

from __future__ import annotations

import time

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from clearsight.data import Dataset
from clearsight.errors import DataSourceError, RegistryError
from clearsight.pipelines.promote import evaluate_and_promote
from clearsight.tracking.faults import BOUNDED_HTTP_RETRIES, is_transient
from clearsight.tracking.registry import registry_state
from flows.retrain import is_io_fault
from tests.faults.conftest import (
    clearsight,
    free_port,
    register_untrained,
    set_history,
    start_server,
    stop_server,
)


def test_io_fault_predicate_sees_through_mlflow_wrapping(monkeypatch) -> None:
    """What MLflow raises for a server that is not there is retried; nothing else is."""
    for name, value in BOUNDED_HTTP_RETRIES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient(tracking_uri=f"http://127.0.0.1:{free_port()}")  # nobody listens
    with pytest.raises(MlflowException) as gone:
        client.get_registered_model("clearsight-cnn")
    assert not isinstance(gone.value, OSError) and gone.value.__cause__ is None
    assert is_transient(gone.value) and is_io_fault(gone.value)
    unavailable = MlflowException("try later", error_code=2)  # TEMPORARILY_UNAVAILABLE
    assert is_io_fault(unavailable)
    missing = MlflowException("no such model", error_code=3000)  # RESOURCE_DOES_NOT_EXIST
    assert not is_io_fault(missing)
    try:
        raise RegistryError("cannot load clearsight-cnn v2: corrupted") from gone.value
    except RegistryError as refused:
        assert not is_io_fault(refused)  # a ClearsightError is never retried
    assert not is_io_fault(DataSourceError("unreadable"))
    assert is_io_fault(OSError(28, "No space left on device"))


@pytest.mark.slow
def test_server_outage_fails_clearly_and_a_rerun_completes(server_store, digits) -> None:
    store, port = server_store
    images, labels = digits
    holdout = Dataset(images[::4], labels[::4], "holdout")
    server = start_server(store.root, port)
    try:
        set_history(store.settings, [register_untrained(store.settings, seed=1)])
        challenger = register_untrained(store.settings, seed=2)
        stop_server(server)

        # The library: the error a flow's retry predicate sees, after a bounded wait.
        began = time.monotonic()
        with pytest.raises(MlflowException) as gone:
            evaluate_and_promote(store.settings, holdout, challenger, check_explanations=False)
        waited = time.monotonic() - began
        assert is_io_fault(gone.value), repr(gone.value)
        assert waited < 60, f"{waited:.0f} s before the outage surfaced"

        # The command: one line, exit 1, no traceback.
        result = clearsight("models", env=store.env, timeout=300)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "I/O fault" in errors[0], result.stderr[-2000:]

        # The server comes back (same store): nothing changed meanwhile, and the rerun works.
        server = start_server(store.root, port)
        state = registry_state(store.settings)
        assert state["champion"] == "1" and state["challenger"] is None
        decision = evaluate_and_promote(
            store.settings, holdout, challenger, check_explanations=False
        )
        assert decision.challenger_version == challenger
        assert registry_state(store.settings)["challenger"] == challenger
        versions = MlflowClient().search_model_versions("name = 'clearsight-cnn'")
        assert sorted(int(mv.version) for mv in versions) == [1, 2]
    finally:
        stop_server(server)
