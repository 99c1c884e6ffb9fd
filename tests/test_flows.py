"""The Prefect flows for real, on Prefect's test harness (one temporary server per session)."""

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from prefect.testing.utilities import prefect_test_harness

from clearsight.data.incoming import read_ledger

pytestmark = pytest.mark.slow  # real Prefect server, real training: minutes, still run in CI


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, digits):
    """Stores under tmp, a lenient class-recall floor (tiny models), a harness server."""
    root = tmp_path_factory.mktemp("flows")
    images, labels = digits
    good = root / "digits.npz"
    np.savez(good, x_train=images, y_train=labels)
    bad_labels = labels.copy()
    bad_labels[::20] = 42
    bad = root / "bad.npz"
    np.savez(bad, x_train=images, y_train=bad_labels)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLEARSIGHT_DATA_DIR", str(root / "data"))
        mp.setenv("CLEARSIGHT_MLFLOW_DIR", str(root / "mlflow"))
        mp.setenv("BENTOML_HOME", str(root / "bentoml"))  # bentos built after promotions
        mp.setenv("CLEARSIGHT_PROMOTION__MIN_CLASS_RECALL", "0")
        mp.setenv("CLEARSIGHT_PROMOTION__MAX_COMPLETENESS_GAP", "1")
        mp.setenv("CLEARSIGHT_TRACKING__LOG_SYSTEM_METRICS", "false")
        mp.setenv("CLEARSIGHT_TRAIN__BATCH_SIZE", "32")
        with prefect_test_harness(server_startup_timeout=180):
            yield {
                "root": root,
                "good": good,
                "bad": bad,
                "client": MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"),
            }


def _versions(client: MlflowClient) -> list[str]:
    try:
        found = client.search_model_versions("name='clearsight-cnn'")
        return sorted(str(v.version) for v in found)
    except Exception:
        return []


def test_retrain_bootstraps_then_decides(env) -> None:
    from flows.retrain import retrain

    first = retrain(source="npz", path=str(env["good"]), epochs=2)
    assert first.promoted and first.champion == first.version == "1"
    assert "First model" in first.reason
    assert Path(first.validation_report).is_file()
    second = retrain(source="npz", path=str(env["good"]), epochs=1, seed=7)
    assert second.version == "2"
    client = env["client"]
    champion = str(client.get_model_version_by_alias("clearsight-cnn", "champion").version)
    assert champion == ("2" if second.promoted else "1")
    assert second.champion == champion
    assert str(client.get_model_version_by_alias("clearsight-cnn", "challenger").version) == "2"


def test_corrupted_data_fails_the_flow_before_training(env) -> None:
    from flows.retrain import retrain

    client = env["client"]
    versions_before = _versions(client)
    runs_before = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
    state = retrain(source="npz", path=str(env["bad"]), epochs=1, return_state=True)
    assert state.is_failed()
    assert "data contract failed" in state.message or "label" in str(state.message)
    assert _versions(client) == versions_before
    runs_after = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
    assert runs_after == runs_before


def test_incoming_batch_triggers_one_retrain(env) -> None:
    from flows.incoming import watch_incoming

    incoming = env["root"] / "data" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    (incoming / "batch-1.npz").write_bytes(env["good"].read_bytes())
    (incoming / "notes.txt").write_text("ignored: not a data set")
    before = len(_versions(env["client"]))
    outcomes = watch_incoming()
    assert [o["batch"] for o in outcomes] == ["batch-1.npz"]
    assert len(_versions(env["client"])) == before + 1
    assert read_ledger(incoming)["batch-1.npz"]["source"] == "npz"
    assert watch_incoming() == []  # seen: nothing new


def test_prefect_yaml_deployments_load_with_schedules() -> None:
    from flows.schedule import load_deployments

    deployments = {d.name: d for d in load_deployments()}
    assert set(deployments) == {"nightly", "incoming"}
    nightly = deployments["nightly"].schedules[0].schedule
    assert nightly.cron == "0 3 * * *" and nightly.timezone == "UTC"
    assert deployments["nightly"].parameters == {"source": "embedded"}
    interval = deployments["incoming"].schedules[0].schedule
    assert interval.interval.total_seconds() == 60
