"""Keep every library in the stack from calling home, and keep entry points' output readable.

Prefect, MLflow, BentoML and Great Expectations each send usage telemetry by default. On a
closed network that costs seconds of DNS time-outs per start, and nobody asked for it, so
importing ``clearsight`` switches it off (only where the user has not chosen otherwise); the
variables also reach the child processes the stack starts (a Prefect server, ``mlflow ui``,
``bentoml serve``).

Quieting TensorFlow's C++ log and MLflow's download bars is a matter of taste, not of safety:
only the project's own entry points (the CLI, the flows, the service) call ``quiet_output``,
so importing the library in a notebook changes nothing else about the process.
"""

from __future__ import annotations

import os

TELEMETRY_OFF: dict[str, str] = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "GX_ANALYTICS_ENABLED": "false",
}
QUIET_OUTPUT: dict[str, str] = {
    # TensorFlow's C++ log (start-up chatter, spurious graph "errors") is noise for a user;
    # real failures still raise Python exceptions.
    "TF_CPP_MIN_LOG_LEVEL": "3",
    # Per-file download bars from MLflow drown the pipeline's own progress output.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
# What a served bento sets in every worker and container built from it.
QUIET_ENVIRONMENT: dict[str, str] = TELEMETRY_OFF | QUIET_OUTPUT


def disable_telemetry() -> None:
    """Set the opt-out variables unless the environment already decides them."""
    for name, value in TELEMETRY_OFF.items():
        os.environ.setdefault(name, value)


def quiet_output() -> None:
    """For entry points: less log noise from TensorFlow and MLflow (user choices win)."""
    for name, value in QUIET_OUTPUT.items():
        os.environ.setdefault(name, value)
