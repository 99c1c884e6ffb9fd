"""Keep every library in the stack from calling home.

Prefect, MLflow, BentoML and Great Expectations each send usage telemetry by default. On a
closed network that costs seconds of DNS time-outs per start, and nobody asked for it. Setting
the variables in ``os.environ`` (only where the user has not chosen otherwise) also covers the
child processes the stack starts: a Prefect server, ``mlflow ui``, ``bentoml serve``.
"""

from __future__ import annotations

import os

QUIET_ENVIRONMENT: dict[str, str] = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "GX_ANALYTICS_ENABLED": "false",
    # TensorFlow's C++ log (start-up chatter, spurious graph "errors") is noise for a user;
    # real failures still raise Python exceptions.
    "TF_CPP_MIN_LOG_LEVEL": "3",
    # Per-file download bars from MLflow drown the pipeline's own progress output.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def disable_telemetry() -> None:
    """Set the opt-out variables unless the environment already decides them."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
