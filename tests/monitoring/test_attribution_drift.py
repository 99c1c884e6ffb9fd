"""Only the attributions drift: the same held-out digits, answered by a registered version
whose attributions differ (trained on shuffled labels), against the champion's reference.

A real SQLite MLflow registry holds v1 (the ``monitored`` model, with its training reference
logged as a training run does) as champion and v2 (the same architecture and images, labels
shuffled). The traffic log is written by the service's own ``RequestMonitor``; the check is
``run_monitor``, as ``clearsight monitor`` runs it. The monitor must explain v2's records
with v2: with the champion's model (what it did before) the window would look normal.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from clearsight.config import Settings, TrainSettings
from clearsight.explain import model_gradients
from clearsight.explain.gradients import PROBABILITIES
from clearsight.model.fitting import train
from clearsight.monitoring.drift import DriftReport
from clearsight.monitoring.reference import ARTIFACT
from clearsight.monitoring.requests import RequestMonitor, default_bounds
from clearsight.monitoring.traffic import TrafficLog
from clearsight.pipelines.monitor import run_monitor
from clearsight.tracking import store as tracking
from clearsight.tracking.run import log_keras_model
from tests.conftest import stores_under

from .conftest import Monitored

pytestmark = pytest.mark.slow  # two trained CNNs (one shared), a SQLite registry
WINDOW = 200


@dataclass(frozen=True)
class Registered:
    settings: Settings
    models: dict[str, keras.Model]  # version -> model
    run_ids: dict[str, str]  # version -> training run
    pool: np.ndarray  # held-out digits, never in a reference or in fitting


def register(
    settings: Settings, model: keras.Model, monitored: Monitored | None
) -> tuple[str, str]:
    """A registered version in its own run; with the training reference when ``monitored``."""
    experiment = tracking.configure(settings)
    with mlflow.start_run(experiment_id=experiment) as run:
        if monitored is not None:
            with tempfile.TemporaryDirectory() as tmp:
                monitored.reference.save(Path(tmp) / ARTIFACT)
                mlflow.log_artifacts(tmp)
        info = log_keras_model(model, settings.tracking.registered_model)
    return str(info.registered_model_version), run.info.run_id


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory, monitored: Monitored) -> Registered:
    settings = stores_under(tmp_path_factory.mktemp("attribution-drift"))
    pixels = np.rint(monitored.train * 255).astype(np.uint8)
    shuffled_labels = np.random.default_rng(1).permutation(monitored.train_labels)
    keras.utils.set_random_seed(1)
    shuffled = train(
        pixels[:2500],
        shuffled_labels[:2500],
        pixels[2500:],
        shuffled_labels[2500:],
        TrainSettings(epochs=3, batch_size=64, augment=False),
        verbose=0,
    ).model
    v1, run1 = register(settings, monitored.model, monitored)
    v2, run2 = register(settings, shuffled, None)
    MlflowClient().set_registered_model_alias(settings.tracking.registered_model, "champion", v1)
    models = {v1: monitored.model, v2: shuffled}
    return Registered(settings, models, {v1: run1, v2: run2}, monitored.pool[:WINDOW])


def served_by(
    registered: Registered, folder: Path, version: str, run_id: str | None = None
) -> Settings:
    """The pool answered by ``version`` (its own predictions) and logged as the service logs;
    settings whose traffic log is ``folder``."""
    model = registered.models.get(version, next(iter(registered.models.values())))
    log = TrafficLog(folder, 1.0, 10_000)
    monitor = RequestMonitor(
        default_bounds(), log, version, run_id=run_id or registered.run_ids.get(version)
    )
    for start in range(0, len(registered.pool), 16):
        x = registered.pool[start : start + 16, ..., None]
        monitor.review(x, np.asarray(model_gradients(model).scores(x, PROBABILITIES)), str(start))
    log.flush()
    return registered.settings.model_copy(update={"traffic_dir": folder})


def drifted(report: DriftReport, kind: str) -> list[str]:
    return [t.name for t in report.tests if t.kind == kind and t.drifted]


def of_kind(report: DriftReport, kind: str) -> list[str]:
    return [t.name for t in report.tests if t.kind == kind]


def test_attributions_of_the_serving_version_drift_while_inputs_stay_quiet(
    registered: Registered, tmp_path: Path
) -> None:
    settings = served_by(registered, tmp_path, "2")
    outcome = run_monitor(settings, WINDOW, log_to_mlflow=False)
    report = outcome.report
    scores = {t.name: round(t.score, 1) for t in report.tests}
    print(f"served by the shuffled-label v2: {report.verdict}, -log10 p: {scores}")
    assert outcome.version == "1"  # compared with the champion's reference
    assert len(of_kind(report, "input")) == 6 and drifted(report, "input") == []
    assert drifted(report, "attribution"), report.to_dict()
    assert "window served by version(s) 2; compared with v1" in report.notes


def test_the_same_digits_served_by_the_champion_do_not_drift(
    registered: Registered, tmp_path: Path
) -> None:
    """The control: identical pixels, answered and explained by v1."""
    report = run_monitor(served_by(registered, tmp_path, "1"), WINDOW, log_to_mlflow=False).report
    scores = {t.name: round(t.score, 1) for t in report.tests}
    print(f"served by the champion v1: {report.verdict}, -log10 p: {scores}")
    assert len(of_kind(report, "attribution")) == 4
    assert not report.drifted, report.to_dict()


@pytest.mark.parametrize(
    ("version", "run_id", "reason"),
    [
        ("2", "a-run-the-registry-never-had", "the records name run a-run-the-registry-never-had"),
        ("9", "run-9", "v9"),
    ],
)
def test_records_whose_serving_version_cannot_be_loaded_are_left_out(
    registered: Registered, tmp_path: Path, version: str, run_id: str, reason: str
) -> None:
    """A version number reused by a recreated registry (another run), or one that is gone:
    never explained with another model; the attribution tests are skipped, and say why."""
    settings = served_by(registered, tmp_path, version, run_id)
    report = run_monitor(settings, WINDOW, log_to_mlflow=False).report
    assert of_kind(report, "attribution") == []
    left_out = [n for n in report.notes if "left out of the attribution tests" in n]
    assert len(left_out) == 1 and f"{WINDOW} record(s) served by v{version}" in left_out[0]
    assert reason in left_out[0], left_out
    assert any("only 0 summaries, not tested" in n for n in report.notes)
