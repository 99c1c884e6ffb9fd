"""Where the MLflow store is, and what every run records about the code that ran.

The default store is SQLite under ``mlflow/`` with artifacts beside it (``mlflow/artifacts``),
so a fresh clone tracks runs without a server; ``MLFLOW_TRACKING_URI`` (or the setting) points
at any other store, e.g. the compose stack's server.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import mlflow

from clearsight.config import Settings
from clearsight.mlflow_links import CUSTOM_MODEL_DEVELOPMENT, EXPERIMENT_KIND_TAG
from clearsight.packages import BEHAVIOUR, installed_versions


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
    The experiment is tagged as model training (``mlflow_links``), also when it was created
    before (or retagged by a visit to the UI), so the UI opens its model-training view.
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
        if experiment.tags.get(EXPERIMENT_KIND_TAG) != CUSTOM_MODEL_DEVELOPMENT:
            mlflow.MlflowClient().set_experiment_tag(
                experiment.experiment_id, EXPERIMENT_KIND_TAG, CUSTOM_MODEL_DEVELOPMENT
            )
        return experiment.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        assert settings.mlflow_dir is not None
        location = (settings.mlflow_dir / "artifacts").as_uri()
    return mlflow.create_experiment(
        settings.tracking.experiment,
        artifact_location=location,
        tags={EXPERIMENT_KIND_TAG: CUSTOM_MODEL_DEVELOPMENT},
    )


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
    """``version.<package>`` tags for the packages that decide a run's behaviour."""
    return {f"version.{k}": v for k, v in installed_versions(BEHAVIOUR).items()}


def enable_fast_system_metrics() -> None:
    """Sample system metrics every second so short runs get them too."""
    # MLflow leaves both unannotated.
    mlflow.set_system_metrics_sampling_interval(1)  # type: ignore[no-untyped-call]
    mlflow.set_system_metrics_samples_before_logging(1)  # type: ignore[no-untyped-call]
