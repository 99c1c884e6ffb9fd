"""``clearsight monitor`` and the ``monitor`` flow on a real registry whose champion was
trained by ``train_and_assess`` (so its run logged ``monitoring/reference.npz``), with traffic
written by the service's own ``RequestMonitor``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pytest
from prefect.testing.utilities import prefect_test_harness

from clearsight.config import Settings
from clearsight.monitoring.reference import ARTIFACT
from clearsight.monitoring.requests import RequestMonitor, default_bounds
from clearsight.monitoring.shifts import SHIFTS
from clearsight.monitoring.traffic import TrafficLog

pytestmark = pytest.mark.slow  # a real training run, MLflow, CLI processes, a Prefect harness

CLEARSIGHT = str(Path(sys.executable).parent / "clearsight")


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory):
    """A champion trained by train_and_assess (2 epochs, no explanation artifacts) on the
    embedded digits, stores under tmp; yields (settings, model, shuffled holdout pixels in
    0-1, run id)."""
    root = tmp_path_factory.mktemp("monitor")
    env = {
        "CLEARSIGHT_DATA_DIR": str(root / "data"),
        "CLEARSIGHT_MLFLOW_DIR": str(root / "mlflow"),
        "CLEARSIGHT_PROMOTION__MIN_CLASS_RECALL": "0",
        "CLEARSIGHT_PROMOTION__MAX_COMPLETENESS_GAP": "1",
        # Latency is not under test here, and a busy 2-core machine can exceed 50 ms p95.
        "CLEARSIGHT_PROMOTION__MAX_LATENCY_P95_MS": "10000",
        "CLEARSIGHT_TRACKING__LOG_SYSTEM_METRICS": "false",
        "CLEARSIGHT_TRACKING__LOG_EXPLANATIONS": "false",
        "CLEARSIGHT_TRAIN__EPOCHS": "2",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        from clearsight.data.gate import run_data_gate
        from clearsight.pipelines.promote import evaluate_and_promote
        from clearsight.pipelines.train import train_and_assess
        from clearsight.tracking.registry import load_model_ref

        settings = Settings()
        gated = run_data_gate(settings)
        run = train_and_assess(settings, gated, verbose=0)
        decision = evaluate_and_promote(settings, gated.splits.holdout, run.version)
        assert decision.promoted, decision.reason
        model, _ = load_model_ref(settings, "champion", root / "model")
        holdout = gated.splits.holdout.pixels().astype(np.float32) / 255.0
        holdout = holdout[np.random.default_rng(0).permutation(len(holdout))]  # not by class
        yield settings, model, holdout, run.run_id


def log_traffic(settings: Settings, model, images: np.ndarray) -> None:
    """What the service does per request: features, bounds check, sampled records."""
    from clearsight.explain import model_gradients
    from clearsight.explain.gradients import PROBABILITIES

    log = TrafficLog(settings.traffic_dir, 1.0, settings.monitoring.log_max_records)
    monitor = RequestMonitor(default_bounds(), log, "1")
    for start in range(0, len(images), 16):
        x = images[start : start + 16, ..., None]
        p = np.asarray(model_gradients(model).scores(x, PROBABILITIES))
        monitor.review(x, p, f"request-{start}")
    log.flush()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"COLUMNS": "200"}
    return subprocess.run([CLEARSIGHT, *args], env=env, capture_output=True, text=True, timeout=300)


def test_the_training_run_logged_its_reference(champion) -> None:
    settings, _, _, run_id = champion
    from clearsight.pipelines.monitor import champion_reference

    logged = mlflow.MlflowClient().list_artifacts(run_id, "monitoring")
    assert [a.path for a in logged] == [ARTIFACT]
    reference = champion_reference(settings).reference
    assert reference.source.startswith("training run")
    assert len(reference.features["ink_fraction"]) > 500


def test_monitor_is_quiet_on_a_clean_stream_and_flags_a_shifted_one(champion) -> None:
    settings, model, holdout, _ = champion
    from clearsight.errors import MonitorError
    from clearsight.monitoring.scores import DriftScores
    from clearsight.pipelines.monitor import run_monitor

    with pytest.raises(MonitorError, match="at least 20"):  # the CLI: one line, exit 1
        run_monitor(settings)

    log_traffic(settings, model, holdout[:200])
    clean = cli("monitor", "--json", "--window", "200")
    assert clean.returncode == 0, clean.stderr
    report = json.loads(clean.stdout)
    assert report["verdict"] == "no drift", report["reasons"]
    assert report["window"] == 200 and report["mlflow_run_id"]
    logged = mlflow.MlflowClient().list_artifacts(report["mlflow_run_id"], "monitoring")
    assert {a.path for a in logged} == {"monitoring/drift.png", "monitoring/report.json"}
    scores = DriftScores.read(settings.traffic_dir)
    assert not scores.drifted and scores.mlflow_run_id == report["mlflow_run_id"]
    assert set(scores.tests) == {t["name"] for t in report["tests"]}

    log_traffic(settings, model, SHIFTS["thick"](holdout[200:300], np.random.default_rng(0)))
    shifted = cli("monitor", "--window", "100", "--fail-on-drift")
    assert shifted.returncode == 2, shifted.stdout + shifted.stderr
    assert "drift" in shifted.stdout and "ink_fraction" in shifted.stdout
    runs = mlflow.search_runs(experiment_names=["clearsight-monitoring"])
    assert sorted(runs["tags.verdict"]) == ["drift", "no drift"]
    assert DriftScores.read(settings.traffic_dir).verdict == "drift"


def test_monitor_flow_alerts_without_newer_data_and_sees_new_batches(champion) -> None:
    settings, model, holdout, _ = champion
    from clearsight.pipelines.monitor import newer_labelled_data
    from flows.monitor import monitor

    log_traffic(settings, model, SHIFTS["inverted"](holdout[300:400], np.random.default_rng(1)))
    with prefect_test_harness(server_startup_timeout=180):
        state = monitor(window=100, return_state=True)
        assert state.is_failed() and "drift alert" in state.message
        from prefect.client.orchestration import get_client

        async def artifacts():
            async with get_client() as client:
                return await client.read_artifacts()

        import anyio

        keys = {a.key for a in anyio.run(artifacts)}
        assert "monitor-alert" in keys
        assert newer_labelled_data(settings) is None
        incoming = settings.incoming_dir
        incoming.mkdir(parents=True, exist_ok=True)
        np.savez(incoming / "labelled.npz", x_train=np.zeros((1, 28, 28), np.uint8), y_train=[3])
        assert "new incoming batch" in (newer_labelled_data(settings) or "")

        # A retrain triggered an hour ago for this champion: the drift persists, the new
        # batch waits for the cooldown to end instead of starting another retrain.
        from clearsight.pipelines.retrain_trigger import (
            labelled_data,
            record_trigger,
            trigger_path,
        )
        from clearsight.retrain_policy import LastTrigger

        an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
        record_trigger(trigger_path(settings), LastTrigger(an_hour_ago, "1", "dv0001"))
        versions = len(mlflow.MlflowClient().search_model_versions("name='clearsight-cnn'"))
        waiting = monitor(window=100, return_state=True)
        assert waiting.is_completed() and "not retrained" in waiting.message, waiting.message
        assert "cooldown" in waiting.message
        assert len(mlflow.MlflowClient().search_model_versions("name='clearsight-cnn'")) == versions
        assert labelled_data(settings).incoming == ("labelled.npz",)


def test_a_version_without_a_logged_reference_uses_the_frozen_holdout(champion) -> None:
    settings, model, _, _ = champion
    from clearsight.pipelines.monitor import champion_reference
    from clearsight.tracking import store
    from clearsight.tracking.run import log_keras_model

    store.configure(settings)
    with mlflow.start_run():
        info = log_keras_model(model, settings.tracking.registered_model)
    old = champion_reference(settings, str(info.registered_model_version))
    assert old.reference.source.startswith("computed by the monitor from the frozen holdout")

    # A version of another task gets no reference from this (digit) holdout: a clear refusal.
    from clearsight.errors import RegistryError
    from clearsight.model.cnn import Architecture, build_cnn
    from clearsight.task import ImageTask

    shapes = ImageTask(32, 32, 3, ("circle", "square", "triangle"), digit_like=False)
    tiny = build_cnn(shapes, Architecture(conv1_filters=2, conv2_filters=2), name="tiny")
    with mlflow.start_run():
        other = log_keras_model(tiny, settings.tracking.registered_model, task=shapes)
    with pytest.raises(RegistryError, match=r"frozen holdout .* is another task's"):
        champion_reference(settings, str(other.registered_model_version))
