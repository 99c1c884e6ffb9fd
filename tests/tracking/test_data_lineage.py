"""Freshness and the monitor's trigger against a real MLflow store (SQLite) and a real data
version store: the lost-challenger case that made nightly retrains repeat themselves, and
persistent drift that made the monitor retrain every hour.

Runs and versions are made directly (a tag, a registered version, an alias), as a training
run leaves them, without training: what is under test is what freshness reads.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from clearsight.config import DataSettings, Settings
from clearsight.data import Dataset
from clearsight.data.sources import load
from clearsight.data.versions import BatchRef, DataVersion, VersionStore
from clearsight.pipelines.retrain_trigger import (
    decide_on_drift,
    labelled_data,
    read_last_trigger,
    record_trigger,
    trigger_path,
)
from clearsight.retrain_policy import Action
from clearsight.tracking import store as tracking
from clearsight.tracking.data_lineage import data_freshness
from tests.conftest import stores_under


def training_run(settings: Settings, data_version: str, status: str = "FINISHED") -> str:
    """A run in the training experiment tagged as ``log_data_version`` tags it."""
    experiment = tracking.configure(settings)
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.set_tag("data_version", data_version)
    if status != "FINISHED":
        MlflowClient().set_terminated(run.info.run_id, status)
    return run.info.run_id


def register(settings: Settings, run_id: str, alias: str, verdict: str) -> str:
    """A registered version of ``run_id`` with ``alias``, judged as the policy records it."""
    client = MlflowClient()
    name = settings.tracking.registered_model
    if not client.search_registered_models(f"name='{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id).version
    client.set_registered_model_alias(name, alias, version)
    client.set_tag(run_id, "promotion.verdict", verdict)
    return str(version)


def add_version(settings: Settings, parent: DataVersion, base: Dataset, name: str) -> DataVersion:
    """The next data version of the configured source: one accepted batch of 10 digits."""
    batch = Dataset(base.images[:10], base.labels[:10], name)
    return VersionStore.of(settings).add(parent, batch, BatchRef(name, name, len(batch)))


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow database, migrated once (seconds) and copied for each test."""
    path = tmp_path_factory.mktemp("migrated") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def lineage(tmp_path: Path, migrated: Path):
    """Stores under tmp; the configured source is a small NPZ (the embedded one is parsed from
    text on every load: seconds per freshness check) with its root data version."""
    (tmp_path / "mlflow").mkdir()
    shutil.copyfile(migrated, tmp_path / "mlflow" / "mlflow.db")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "base.npz", x_train=images, y_train=np.arange(40) % 10)
    settings = stores_under(tmp_path, data=DataSettings(source="npz", path=tmp_path / "base.npz"))
    base = load(settings.data)
    return settings, base, VersionStore.of(settings).root(settings.data, base)


def test_a_lost_challenger_does_not_make_its_data_new_again(lineage) -> None:
    settings, base, dv1 = lineage
    assert data_freshness(settings).new_data, "nothing trained yet: bootstrap"

    champion_run = training_run(settings, dv1.id)
    register(settings, champion_run, "champion", "promoted")
    fresh = data_freshness(settings)
    assert (fresh.newest, fresh.new_data) == (dv1.id, False)

    dv2 = add_version(settings, dv1, base, "feedback-1")
    assert data_freshness(settings).new_data
    training_run(settings, dv2.id, status="FAILED")  # a crashed attempt saw nothing through
    assert data_freshness(settings).new_data
    challenger_run = training_run(settings, dv2.id)
    register(settings, challenger_run, "challenger", "rejected")  # lost: champion stays v1

    client = MlflowClient()
    champion = client.get_model_version_by_alias(settings.tracking.registered_model, "champion")
    assert champion.run_id == champion_run, "the champion still trained on dv1"
    fresh = data_freshness(settings)
    assert not fresh.new_data, fresh.reason()
    assert fresh.trained is not None and fresh.trained.run_id == challenger_run
    assert "rejected" in fresh.reason() and dv2.id in fresh.reason()
    assert labelled_data(settings).why() is None

    dv3 = add_version(settings, dv2, base, "feedback-2")
    # A run outside the training experiment (a monitor check) does not count.
    tracking.configure(settings.override("tracking", experiment="clearsight-monitoring"))
    with mlflow.start_run():
        mlflow.set_tag("data_version", dv3.id)
    fresh = data_freshness(settings)
    assert fresh.newest == dv3.id and fresh.new_data
    assert dv3.id in (labelled_data(settings).why() or "")


def test_persistent_drift_retrains_once_per_cooldown_on_the_real_stores(lineage) -> None:
    settings, base, dv1 = lineage
    settings = settings.override("monitoring", retrain_cooldown_hours=24)
    register(settings, training_run(settings, dv1.id), "champion", "promoted")
    dv2 = add_version(settings, dv1, base, "feedback-1")  # unseen labelled data
    path = trigger_path(settings)
    t0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)

    actions = []
    for hour in range(4):  # the hourly monitor, drift every time, the retrain still running
        decision = decide_on_drift(settings, True, "1", now=t0 + timedelta(hours=hour))
        if decision.action is Action.RETRAIN:
            assert decision.record is not None
            record_trigger(path, decision.record)
        actions.append(decision.action)
    assert actions == [Action.RETRAIN] + [Action.COOLDOWN] * 3
    last = read_last_trigger(path)
    assert last is not None and (last.at, last.reference, last.data) == (t0, "1", dv2.id)

    # The retrain finished on dv2 (and lost): drift goes on, and now only labels can help.
    register(settings, training_run(settings, dv2.id), "challenger", "rejected")
    assert decide_on_drift(settings, True, "1", now=t0 + timedelta(hours=5)).action is (
        Action.ALERT
    )
    # New feedback during the cooldown waits; after it, it retrains.
    incoming = settings.incoming_dir
    assert incoming is not None
    incoming.mkdir(parents=True, exist_ok=True)
    np.savez(incoming / "labelled.npz", x_train=base.images[:3], y_train=base.labels[:3])
    waiting = decide_on_drift(settings, True, "1", now=t0 + timedelta(hours=6))
    assert waiting.action is Action.COOLDOWN and "1 new incoming batch" in waiting.reason
    after = decide_on_drift(settings, True, "1", now=t0 + timedelta(hours=24))
    assert after.action is Action.RETRAIN and "incoming" in after.reason
    assert decide_on_drift(settings, False, "1").action is Action.NONE


def test_an_unreadable_trigger_file_counts_as_none(tmp_path: Path) -> None:
    path = tmp_path / "retrain-trigger.json"
    assert read_last_trigger(path) is None
    path.write_text("{not json")
    assert read_last_trigger(path) is None
