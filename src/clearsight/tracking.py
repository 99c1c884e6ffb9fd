"""Everything MLflow: where the store is, run tags, dataset inputs, per-epoch metrics, models.

The default store is SQLite under ``mlflow/`` with artifacts beside it (``mlflow/artifacts``),
so a fresh clone tracks runs without a server; ``MLFLOW_TRACKING_URI`` (or the setting) points
at any other store, e.g. the compose stack's server.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np

from clearsight.config import Settings
from clearsight.data import Splits
from clearsight.model import INPUT_SHAPE, N_CLASSES

TRACKED_PACKAGES = (
    "keras",
    "tensorflow",
    "jax",
    "torch",
    "numpy",
    "mlflow",
    "great-expectations",
    "shap",
    "prefect",
    "bentoml",
)


def tracking_uri(settings: Settings) -> str:
    """Environment first, then settings, then the repository's SQLite store."""
    if uri := os.environ.get("MLFLOW_TRACKING_URI") or settings.tracking.tracking_uri:
        return uri
    assert settings.mlflow_dir is not None
    return f"sqlite:///{settings.mlflow_dir / 'mlflow.db'}"


def configure(settings: Settings) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns its id.

    A local SQLite store gets an explicit artifact location under ``mlflow/``: otherwise MLflow
    puts artifacts in ``./mlruns`` of whatever directory the first run happened to start in.
    """
    uri = tracking_uri(settings)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI into os.environ, which would
    # then outrank the settings of every later configure() in this process (and leak into
    # child processes): keep the user's environment as it was.
    users_choice = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if users_choice is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = users_choice
    experiment = mlflow.get_experiment_by_name(settings.tracking.experiment)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        assert settings.mlflow_dir is not None
        location = (settings.mlflow_dir / "artifacts").as_uri()
    return mlflow.create_experiment(settings.tracking.experiment, artifact_location=location)


def git_state(repo: Path) -> dict[str, str]:
    """Commit and dirty flag of the code that ran, when it runs from a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": str(dirty).lower()}


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a run's behaviour (absent ones skipped)."""
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[f"version.{name}"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def log_split_inputs(splits: Splits) -> None:
    """``mlflow.log_input`` for train, validation and holdout, named by split, with digests."""
    contexts = {"train": "training", "validation": "validation", "holdout": "evaluation"}
    for name, ds in splits.items():
        dataset = mlflow.data.from_numpy(
            features=ds.pixels().reshape(len(ds), -1),
            targets=ds.labels,
            name=name,
            digest=ds.digest[:16],
        )
        tags = {"sha256": ds.digest, "origin": ds.origin}
        mlflow.log_input(dataset, context=contexts[name], tags=tags)


class EpochMetricsLogger(keras.callbacks.Callback):
    """Per-epoch loss and accuracy (train and validation) as MLflow metric steps."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs:
            mlflow.log_metrics({k: float(v) for k, v in logs.items()}, step=epoch + 1)


def model_signature() -> Any:
    """float32 (-1, 28, 28, 1) in, float32 (-1, 10) probabilities out."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *INPUT_SHAPE), "image")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, N_CLASSES), "probabilities")]),
    )


def model_requirements() -> list[str]:
    """Pinned requirements of the current backend: inference from imports costs ~18 s."""
    backend_package = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[
        keras.backend.backend()
    ]
    names = ["keras", backend_package, "numpy", "mlflow"]
    return [f"{n}=={importlib.metadata.version(n)}" for n in names]


def log_keras_model(model: keras.Model, registered_name: str | None) -> Any:
    """Log the model (signature, explicit requirements) and register a new version."""
    import mlflow.keras

    return mlflow.keras.log_model(
        model,
        name="model",
        signature=model_signature(),
        pip_requirements=model_requirements(),
        registered_model_name=registered_name,
        metadata={"keras_backend": keras.backend.backend(), "input_scale": "0-1"},
    )


def enable_fast_system_metrics() -> None:
    """Sample system metrics every second so short runs get them too."""
    mlflow.set_system_metrics_sampling_interval(1)
    mlflow.set_system_metrics_samples_before_logging(1)
