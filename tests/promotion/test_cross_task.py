"""Models of different tasks are never compared: the champion stays, with the reason, both in
the pure policy and against a real MLflow registry (SQLite, tiny untrained models)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from clearsight.config import PromotionSettings, Settings
from clearsight.data import Dataset
from clearsight.data.class_folders import colour_shapes
from clearsight.errors import ConfigurationError
from clearsight.model.cnn import Architecture, build_cnn
from clearsight.model.evaluation import Evaluation
from clearsight.pipelines.promote import evaluate_and_promote
from clearsight.promotion import Candidate, refuse_other_task, same_task
from clearsight.task import DIGITS, ImageTask
from clearsight.tracking import store
from clearsight.tracking.registry import registry_state
from clearsight.tracking.run import log_keras_model
from tests.conftest import stores_under

SHAPES = ImageTask(32, 32, 3, ("circle", "square", "triangle"), digit_like=False)
TINY = Architecture(conv1_filters=2, conv2_filters=2)


def test_same_task_means_same_shape_and_classes() -> None:
    assert same_task(DIGITS, ImageTask(digit_like=False))  # digit rules are a data setting
    assert not same_task(DIGITS, ImageTask(8, 8, 1, DIGITS.class_names, True))
    assert not same_task(DIGITS, DIGITS.with_classes([str(d) for d in range(9, -1, -1)]))
    assert not same_task(SHAPES, SHAPES.with_classes(("circle", "square", "star")))


def test_refusal_keeps_the_champion_and_says_why() -> None:
    probabilities = np.full((3, 3), 0.1)
    probabilities[np.arange(3), np.arange(3)] = 0.8
    challenger = Candidate("2", Evaluation(np.arange(3), probabilities), 1.0, 0.1, None)
    decision = refuse_other_task(challenger, SHAPES, "1", DIGITS, "images")
    assert not decision.promoted and decision.champion_version == "1"
    assert decision.reason.startswith(
        "Kept the champion, not compared: trained for a different task (challenger 32x32 "
        "colour, 3 classes: circle, square, triangle; champion 28x28 grey, 10 classes: "
        "0, 1, 2, 3, 4, ...)"
    )
    assert [c.name for c in decision.checks] == ["same task"]
    assert decision.challenger_metrics["holdout_accuracy"] == 1.0
    assert decision.champion_metrics == {}


def register(settings: Settings, task: ImageTask) -> str:
    experiment = store.configure(settings)
    with mlflow.start_run(experiment_id=experiment):
        model = build_cnn(task, TINY, name="tiny")
        info = log_keras_model(model, settings.tracking.registered_model, task=task)
    return str(info.registered_model_version)


def test_registry_keeps_a_champion_of_another_task(tmp_path: Path, digits) -> None:
    settings = stores_under(
        tmp_path,
        promotion=PromotionSettings(
            min_class_recall=0.0, max_model_mb=100.0, max_latency_p95_ms=1e6
        ),
    )
    images, labels = digits
    v1 = register(settings, DIGITS)
    first = evaluate_and_promote(
        settings, Dataset(images[:50], labels[:50], "digits"), v1, check_explanations=False
    )
    assert first.promoted

    shapes = colour_shapes(4, size=32, seed=3)
    v2 = register(settings, SHAPES)
    second = evaluate_and_promote(settings, shapes, v2, check_explanations=False)
    assert not second.promoted
    assert second.reason.startswith("Kept the champion, not compared: trained for a different")
    state = registry_state(settings)
    assert state["champion"] == v1 and state["challenger"] == v2

    client = MlflowClient()
    name = settings.tracking.registered_model
    description = client.get_model_version(name, v2).description
    assert description.startswith(
        "Task: 32x32 colour, 3 classes; input [-1, 32, 32, 3]; classes: circle, square, triangle."
    )
    assert "not compared" in description
    assert client.get_model_version(name, v2).tags["promotion"] == "rejected"

    # The digits' holdout cannot score the shapes model: a one-line refusal, no alias moves.
    v3 = register(settings, SHAPES)
    with pytest.raises(ConfigurationError, match="trained for 32x32 colour, 3 classes") as err:
        evaluate_and_promote(
            settings, Dataset(images[:50], labels[:50], "digits"), v3, check_explanations=False
        )
    assert "holdout holds 28x28 grey, 10 classes" in str(err.value)
    assert "\n" not in str(err.value)
    after = registry_state(settings)
    assert (after["champion"], after["challenger"]) == (v1, v2)
