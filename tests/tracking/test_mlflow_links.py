"""Every MLflow link opens the model-training view, and the experiment is tagged as model
training (MLflow 3's UI otherwise opens an experiment on its GenAI overview)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from clearsight.mlflow_links import (
    CUSTOM_MODEL_DEVELOPMENT,
    EXPERIMENT_KIND_TAG,
    mlflow_ui_link,
    ui_base,
    with_model_training_view,
)
from clearsight.reporting.retrain_summary import RetrainSummary
from clearsight.tracking.store import configure
from tests.conftest import stores_under

VIEW = "workflowType=machine_learning"


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (("1", "abc"), {}, "http://ui:5000/#/experiments/1/runs/abc?" + VIEW),
        ((None, "abc"), {}, "http://ui:5000/#/runs/abc?" + VIEW),
        (("7",), {}, "http://ui:5000/#/experiments/7?" + VIEW),
        ((), {}, "http://ui:5000/#/experiments?" + VIEW),
        (
            (),
            {"model": "clearsight cnn", "version": "3"},
            "http://ui:5000/#/models/clearsight%20cnn/versions/3?" + VIEW,
        ),
    ],
)
def test_links_name_the_page_and_the_view(args, kwargs, expected) -> None:
    assert mlflow_ui_link("http://ui:5000/", *args, **kwargs) == expected


def test_the_view_joins_an_existing_query_and_replaces_an_old_view() -> None:
    assert with_model_training_view("http://ui/#/experiments/1?compareRunsMode=CHART") == (
        "http://ui/#/experiments/1?compareRunsMode=CHART&" + VIEW
    )
    assert with_model_training_view("http://ui/#/experiments/1?workflowType=genai") == (
        "http://ui/#/experiments/1?" + VIEW
    )
    assert with_model_training_view("http://ui/") == "http://ui/?" + VIEW


def test_a_local_store_links_to_what_clearsight_ui_serves() -> None:
    assert ui_base("sqlite:////tmp/mlflow.db") == "http://127.0.0.1:5000"
    assert ui_base("https://mlflow.example/") == "https://mlflow.example"


def test_the_retrain_summary_links_the_run_in_the_training_view() -> None:
    def summary(uri: str) -> RetrainSummary:
        return RetrainSummary("r1", "m", "2", True, "", "2", uri, "4", None, None)

    assert summary("http://mlflow:5000").run_link() == (
        "http://mlflow:5000/#/experiments/4/runs/r1?" + VIEW
    )
    local = summary("sqlite:///x.db").run_link()
    assert local.startswith("http://127.0.0.1:5000/#/experiments/4/runs/r1?" + VIEW)
    assert "clearsight ui" in local


def test_the_experiment_is_tagged_as_model_training(tmp_path: Path) -> None:
    settings = stores_under(tmp_path)
    experiment_id = configure(settings)
    tags = mlflow.get_experiment(experiment_id).tags
    assert tags[EXPERIMENT_KIND_TAG] == CUSTOM_MODEL_DEVELOPMENT
    # An experiment retagged since (a UI visit, an older clearsight) is put right again.
    mlflow.MlflowClient().set_experiment_tag(
        experiment_id, EXPERIMENT_KIND_TAG, "genai_development"
    )
    assert configure(settings) == experiment_id
    assert (
        mlflow.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == CUSTOM_MODEL_DEVELOPMENT
    )
