"""Training and MLflow logging on a real SQLite store: the run must hold everything."""

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from clearsight.config import DataSettings, Settings, TrainSettings
from clearsight.data.gate import run_data_gate
from clearsight.model.cnn import build_cnn
from clearsight.model.evaluation import predict_probabilities
from clearsight.model.fitting import train
from clearsight.pipelines.train import TrainingRun, train_and_assess
from tests.conftest import REPO

EXPECTED_ARTIFACTS = {
    "data/validation.json",
    "task.json",  # the task: image shape, channels, class names
    "monitoring/reference.npz",  # the drift monitor's training reference
    "evaluation/confusion_matrix.png",
    "evaluation/misclassified.png",
    "evaluation/per_class_metrics.csv",
    "training/learning_curves.png",
    "model/filters_conv1.png",
    "model/filters_conv2.png",
    "model_card.md",
    "model_input_example.json",
    "activations/activations_conv1.png",
    "activations/activations_pool1.png",
    "activations/activations_conv2.png",
    "activations/activations_pool2.png",
    "explanations/panel.png",
    "explanations/shap_image_plot.png",
    "explanations/shap_class_mean.png",
    "explanations/quality.md",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("store")
    return Settings(
        home=REPO,
        data_dir=root / "data",
        mlflow_dir=root / "mlflow",
        data=DataSettings(),
        train=TrainSettings(epochs=2, batch_size=128),
    )


@pytest.fixture(scope="module")
def trained(store: Settings) -> tuple[TrainingRun, object]:
    gated = run_data_gate(store)
    return train_and_assess(store, gated, verbose=0), gated


def _all_artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _all_artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_run_logs_params_metrics_tags_inputs_and_artifacts(trained) -> None:
    run_info, gated = trained
    client = MlflowClient(run_info.tracking_uri)
    run = client.get_run(run_info.run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    for key in (
        "train.epochs",
        "train.batch_size",
        "train.learning_rate",
        "train.seed",
        "train.augment",
        "data.source",
        "data.holdout_fraction",
        "fit.steps_per_execution",
        "fit.jit_compile",
        "n_train",
        "n_holdout",
    ):
        assert key in params, key
    assert params["train.epochs"] == "2"
    assert params["image_shape"] == "28x28x1" and params["n_classes"] == "10"
    assert run.data.tags["task"] == "28x28 grey, 10 classes"
    for key in (
        "holdout_accuracy",
        "holdout_macro_f1",
        "holdout_log_loss",
        "holdout_min_class_recall",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "first_epoch_seconds",
        "steady_epoch_seconds",
        "train_images_per_second",
    ):
        assert key in metrics, key
    assert {f"holdout_recall_{c}" for c in range(10)} <= set(metrics)
    assert any(k.startswith("system/cpu") for k in metrics), "system metrics missing"
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 2
    assert metrics["holdout_accuracy"] > 0.8
    assert metrics["explain_integrated_gradients_completeness_gap_median"] < 0.05
    assert (
        metrics["explain_integrated_gradients_deletion_auc_zero"]
        < metrics["explain_random_deletion_auc_zero"]
    )
    assert tags["keras_backend"] == "tensorflow" and tags["device_kind"] == "cpu"
    assert len(tags["git_commit"]) == 40 and tags["git_dirty"] in {"true", "false"}
    assert tags["version.keras"].startswith("3.")
    assert tags["data_contract_hash"] == gated.report.contract_hash
    for name, digest in gated.splits.digests().items():
        assert tags[f"data_digest.{name}"] == digest
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    version = gated.data_version
    assert version is not None and tags["data_version"] == version.id
    assert set(inputs) == {"train", "validation", "holdout", version.id}
    assert inputs["holdout"].dataset.digest == gated.splits.holdout.digest[:16]
    assert inputs[version.id].dataset.digest == version.digest[:16]
    assert _all_artifacts(client, run.info.run_id) >= EXPECTED_ARTIFACTS
    card = Path(client.download_artifacts(run.info.run_id, "model_card.md")).read_text()
    assert "## Explanation quality" in card
    gap = metrics["explain_integrated_gradients_completeness_gap_median"]
    assert f"| integrated_gradients | {gap:.4g} |" in card


def test_registered_version_loads_and_predicts_like_the_trained_model(trained) -> None:
    run_info, gated = trained
    assert run_info.version == "1"
    mlflow.set_tracking_uri(run_info.tracking_uri)
    loaded = mlflow.keras.load_model(f"models:/{run_info.registered_model}/{run_info.version}")
    pixels = gated.splits.holdout.pixels()[:64]
    accuracy = (
        predict_probabilities(loaded, gated.splits.holdout.pixels()).argmax(1)
        == gated.splits.holdout.labels
    ).mean()
    assert accuracy == pytest.approx(run_info.metrics["holdout_accuracy"])
    again = predict_probabilities(loaded, pixels)
    assert again.shape == (64, 10)
    np.testing.assert_allclose(again.sum(axis=1), 1.0, atol=1e-5)


def test_cli_explains_a_png_with_the_champion(store: Settings, trained, tmp_path: Path) -> None:
    """`clearsight explain` on a digit PNG: overlays written, prediction and quality printed."""
    from PIL import Image

    from clearsight.pipelines.promote import evaluate_and_promote

    run_info, gated = trained
    settings = store.override("promotion", min_class_recall=0.0)
    assert evaluate_and_promote(settings, gated.splits.holdout, run_info.version).promoted
    png = tmp_path / "seven.png"
    holdout = gated.splits.holdout
    Image.fromarray(holdout.pixels()[np.flatnonzero(holdout.labels == 7)[0]]).save(png)
    env = os.environ | {
        "CLEARSIGHT_DATA_DIR": str(settings.data_dir),
        "CLEARSIGHT_MLFLOW_DIR": str(settings.mlflow_dir),
        "COLUMNS": "200",
    }
    cli = str(Path(sys.executable).parent / "clearsight")
    result = subprocess.run(
        [
            cli,
            "explain",
            str(png),
            "--out",
            str(tmp_path / "out"),
            "-m",
            "integrated_gradients",
            "-m",
            "grad_cam",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "predicted 7" in result.stdout
    assert "integrated_gradients_deletion_auc" in result.stdout
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "seven_integrated_gradients.png",
        "seven_grad_cam.png",
    }
    missing = subprocess.run(
        [cli, "explain", str(tmp_path / "nope.png")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 1 and "nope.png' does not exist" in missing.stderr
    dark = tmp_path / "dark_seven.png"
    Image.fromarray(255 - np.asarray(Image.open(png))).resize((84, 84)).save(dark)
    inverted = subprocess.run(
        [cli, "explain", str(dark), "--out", str(tmp_path / "out"), "-m", "saliency", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert inverted.returncode == 0, inverted.stderr[-2000:]
    answer = json.loads(inverted.stdout)
    assert answer["label"] == 7 and answer["preprocessing"][0].startswith("inverted")


def test_same_seed_same_metrics_on_cpu(digits) -> None:
    images, labels = digits
    settings = TrainSettings(epochs=2, batch_size=64, seed=3)
    first = train(images[::2], labels[::2], images[1::2], labels[1::2], settings, verbose=0)
    second = train(images[::2], labels[::2], images[1::2], labels[1::2], settings, verbose=0)
    assert first.history == second.history
    other = train(
        images[::2],
        labels[::2],
        images[1::2],
        labels[1::2],
        settings.model_copy(update={"seed": 4}),
        verbose=0,
    )
    assert other.history != first.history


def test_seed_architecture_by_default() -> None:
    model = build_cnn()
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "InputLayer",
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "Activation",
    ]
    assert model.get_layer("conv1").filters == 32 and model.get_layer("conv2").filters == 64
    assert model.count_params() == 34826


@pytest.mark.slow
def test_cli_trains_under_jax(tmp_path: Path) -> None:
    env = os.environ | {
        "CLEARSIGHT_DATA_DIR": str(tmp_path / "data"),
        "CLEARSIGHT_MLFLOW_DIR": str(tmp_path / "mlflow"),
        "CLEARSIGHT_TRACKING__LOG_SYSTEM_METRICS": "false",
    }
    cli = str(Path(sys.executable).parent / "clearsight")
    result = subprocess.run(
        [cli, "train", "--epochs", "1", "--backend", "jax"],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "holdout accuracy" in result.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    (run,) = client.search_runs(client.get_experiment_by_name("clearsight").experiment_id)
    assert run.data.tags["keras_backend"] == "jax"
    assert run.data.metrics["holdout_accuracy"] > 0.7
    versions = client.search_model_versions("name='clearsight-cnn'")
    assert [v.run_id for v in versions] == [run.info.run_id]
