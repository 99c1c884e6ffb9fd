"""Shared pieces of the fault-injection suite: a small registry on a temporary SQLite store,
and the ``clearsight`` command run as a real child process against it.

Every test here breaks one part of the system on purpose (a killed trainer, a store that goes
away, a full disk, a corrupted artifact, racing operators, an overloaded service, a network
with nothing outside) and checks what survives. They are marked ``faults``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import keras
import mlflow
import pytest
from mlflow.tracking import MlflowClient

from clearsight.choices import CHAMPION, PREVIOUS_CHAMPION
from clearsight.config import Settings
from clearsight.model.cnn import build_cnn
from clearsight.tracking import store as tracking
from clearsight.tracking.registry import HISTORY_TAG
from clearsight.tracking.run import log_keras_model
from tests.conftest import REPO, stores_under

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of this folder is marked ``faults`` (``pytest -m faults`` runs the suite)."""
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.faults)


@dataclass(frozen=True)
class Store:
    """A temporary store and the environment that points the CLI at it."""

    root: Path
    settings: Settings
    env: dict[str, str]


def store_env(root: Path) -> dict[str, str]:
    """The environment of a child ``clearsight``: every store under ``root``, no server."""
    env = {
        **os.environ,
        "CLEARSIGHT_HOME": str(REPO),
        "CLEARSIGHT_DATA_DIR": str(root / "data"),
        "CLEARSIGHT_MLFLOW_DIR": str(root / "mlflow"),
        "CLEARSIGHT_TRACKING__LOG_SYSTEM_METRICS": "false",
        "COLUMNS": "250",
    }
    for name in ("MLFLOW_TRACKING_URI", "CLEARSIGHT_SERVICE_URL", "PREFECT_API_URL"):
        env.pop(name, None)
    return env


def skip_or_fail(reason: str) -> NoReturn:
    """Skip a row that this machine cannot run (no root, no namespaces), but fail it under
    ``CI=true``: in CI every row of "What survives what" must run, never vanish as a skip."""
    if os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}:
        pytest.fail(f"{reason} (CI=true: this row must run here, not be skipped)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_store(root: Path, **sections) -> Store:
    return Store(root, stores_under(root, **sections), store_env(root))


def clearsight(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m clearsight ARGS`` in the repository, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "clearsight", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def register_untrained(settings: Settings, seed: int) -> str:
    """A new registered version holding an untrained seed CNN (cheap; enough for aliases)."""
    keras.utils.set_random_seed(seed)
    experiment = tracking.configure(settings)
    with mlflow.start_run(experiment_id=experiment):
        info = log_keras_model(build_cnn(), settings.tracking.registered_model)
    return str(info.registered_model_version)


def set_history(settings: Settings, history: list[str]) -> None:
    """Champion history and aliases as a sequence of promotions would have left them."""
    tracking.configure(settings)
    client = MlflowClient()
    name = settings.tracking.registered_model
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))
    client.set_registered_model_alias(name, CHAMPION, history[-1])
    if len(history) > 1:
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, history[-2])
