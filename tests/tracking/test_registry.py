"""Promotion policy and rollback against a real MLflow registry (SQLite)."""

import mlflow
import pytest

from clearsight.config import PromotionSettings, Settings, TrainSettings
from clearsight.data import Dataset
from clearsight.errors import RegistryError
from clearsight.model.cnn import build_cnn
from clearsight.model.fitting import train
from clearsight.pipelines.promote import evaluate_and_promote
from clearsight.tracking import store as tracking
from clearsight.tracking.registry import registry_state, rollback
from clearsight.tracking.run import log_keras_model
from tests.conftest import REPO, stores_under


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, digits):
    """A store, a holdout, and three models of known quality: weak, untrained, good."""
    root = tmp_path_factory.mktemp("registry")
    settings = stores_under(
        root,
        promotion=PromotionSettings(min_class_recall=0.0, max_completeness_gap=1.0),
        explain={"panel_size": 10},
    )
    images, labels = digits
    holdout = Dataset(images[1::2], labels[1::2], "holdout")
    weak = train(
        images[:200:2],
        labels[:200:2],
        images[1:40:2],
        labels[1:40:2],
        TrainSettings(epochs=1, batch_size=32, augment=False),
        verbose=0,
    ).model
    good = train(
        images[::2],
        labels[::2],
        images[1::4],
        labels[1::4],
        TrainSettings(epochs=6, batch_size=32),
        verbose=0,
    ).model
    return settings, holdout, {"weak": weak, "untrained": build_cnn(), "good": good}


def register(settings: Settings, model) -> str:
    experiment = tracking.configure(settings)
    with mlflow.start_run(experiment_id=experiment):
        info = log_keras_model(model, settings.tracking.registered_model)
    return str(info.registered_model_version)


def test_policy_sequence_and_rollback(setup) -> None:
    settings, holdout, models = setup
    v1 = register(settings, models["weak"])
    first = evaluate_and_promote(settings, holdout, v1)
    assert first.promoted and first.champion_version is None
    assert "explain_integrated_gradients_completeness_gap_median" in first.challenger_metrics
    assert registry_state(settings)["champion"] == v1

    v2 = register(settings, models["untrained"])
    worse = evaluate_and_promote(settings, holdout, v2, check_explanations=False)
    assert not worse.promoted and "accuracy gain" in worse.reason
    state = registry_state(settings)
    assert state["champion"] == v1 and state["challenger"] == v2

    v3 = register(settings, models["weak"])  # same weights: a tie
    tie = evaluate_and_promote(settings, holdout, v3, check_explanations=False)
    gain = next(c for c in tie.checks if c.name == "accuracy gain")
    assert not tie.promoted and gain.observed == 0.0
    assert registry_state(settings)["champion"] == v1

    v4 = register(settings, models["good"])
    strict = settings.override("promotion", min_accuracy_gain=0.95)
    under = evaluate_and_promote(strict, holdout, v4, check_explanations=False)
    assert not under.promoted
    assert registry_state(settings)["champion"] == v1

    better = evaluate_and_promote(settings, holdout, v4, check_explanations=False)
    assert better.promoted, better.to_markdown()
    state = registry_state(settings)
    assert state["champion"] == v4 and state["previous-champion"] == v1

    client = mlflow.tracking.MlflowClient()
    run_id = client.get_model_version(settings.tracking.registered_model, v4).run_id
    assert client.get_run(run_id).data.tags["promotion.verdict"] == "promoted"
    artifacts = {a.path for a in client.list_artifacts(run_id, "promotion")}
    assert {"promotion/decision.md", "promotion/decision.json"} <= artifacts

    assert rollback(settings) == (v4, v1)
    state = registry_state(settings)
    assert state["champion"] == v1 and state["previous-champion"] is None
    with pytest.raises(RegistryError, match="no previous champion"):
        rollback(settings)


def test_rollback_without_model_is_a_clear_error(tmp_path) -> None:
    settings = Settings(home=REPO, data_dir=tmp_path / "d", mlflow_dir=tmp_path / "m")
    with pytest.raises(RegistryError, match="does not exist"):
        rollback(settings)
