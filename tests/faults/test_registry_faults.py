"""Rows 5 and 6 of "What survives what": a corrupted model artifact in the registry, and two
operators moving aliases at once. Real SQLite registry, real ``clearsight`` processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from clearsight.config import PromotionSettings, Settings, TrainSettings
from clearsight.data import Dataset, HoldoutStore
from clearsight.errors import RegistryError
from clearsight.model.fitting import train
from clearsight.pipelines.promote import evaluate_and_promote
from clearsight.tracking import store as tracking
from clearsight.tracking.registry import registry_state
from clearsight.tracking.registry_lock import lock_path, registry_lock
from clearsight.tracking.run import log_keras_model
from tests.conftest import REPO
from tests.faults.conftest import Store, clearsight, make_store, register_untrained, set_history

LENIENT = PromotionSettings(min_class_recall=0.0, max_completeness_gap=1.0)


def register_trained(settings: Settings, images, labels) -> str:
    """A version that beats an untrained champion: two quick epochs on a few hundred digits."""
    fit = TrainSettings(epochs=2, batch_size=32, augment=False)
    model = train(images, labels, images[:40], labels[:40], fit, verbose=0).model
    with mlflow.start_run(experiment_id=tracking.configure(settings)):
        info = log_keras_model(model, settings.tracking.registered_model)
    return str(info.registered_model_version)


def model_files(store: Store, version: str) -> list[Path]:
    """The files of a registered version's logged model, on the store's disk."""
    tracking.configure(store.settings)
    name = store.settings.tracking.registered_model
    location = MlflowClient().get_model_version_download_uri(name, version)
    return [p for p in Path(urlparse(location).path).rglob("*") if p.is_file()]


def corrupt(store: Store, version: str) -> Path:
    """Overwrite the version's Keras archive with bytes of the same length that are no zip."""
    (archive,) = [p for p in model_files(store, version) if p.suffix == ".keras"]
    archive.write_bytes(b"\0corrupted\0" * (archive.stat().st_size // 11 + 1))
    return archive


@pytest.fixture
def registry_with_champion(tmp_path: Path, digits) -> Store:
    """v1 champion (history [1]) and a frozen holdout, so ``clearsight promote`` can run."""
    store = make_store(tmp_path, promotion=LENIENT, explain={"panel_size": 10})
    images, labels = digits
    HoldoutStore(store.settings.holdout_dir).freeze(Dataset(images[::4], labels[::4], "holdout"))
    set_history(store.settings, [register_untrained(store.settings, seed=1)])
    return store


def test_corrupted_artifact_is_refused_by_promotion(registry_with_champion: Store, digits) -> None:
    store = registry_with_champion
    broken = register_untrained(store.settings, seed=2)
    corrupt(store, broken)

    result = clearsight("promote", "--model", broken, env=store.env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"cannot load clearsight-cnn v{broken}" in lines[0], result.stderr
    state = registry_state(store.settings)
    assert state["champion"] == "1" and state["history"] == ["1"]
    assert state["challenger"] != broken  # refused before any alias moved

    # The same registry still promotes an intact version (the refusal above was the artifact).
    images, labels = digits
    intact = register_trained(store.settings, images[1::2], labels[1::2])
    holdout = Dataset(images[::4], labels[::4], "holdout")
    with pytest.raises(RegistryError, match=f"v{broken}"):
        evaluate_and_promote(store.settings, holdout, broken, check_explanations=False)
    decision = evaluate_and_promote(store.settings, holdout, intact, check_explanations=False)
    assert decision.promoted, decision.reason
    assert registry_state(store.settings)["history"] == ["1", intact]


@pytest.fixture
def four_champions(tmp_path: Path) -> Store:
    """History [1, 2, 3, 4]: three rollbacks can be applied, one after another."""
    store = make_store(tmp_path)
    versions = [register_untrained(store.settings, seed=s) for s in range(4)]
    set_history(store.settings, versions)
    return store


def test_racing_rollbacks_leave_a_serial_history(four_champions: Store) -> None:
    """Three ``clearsight rollback`` processes at once: each rolls back exactly one champion,
    as if they had run one after another, and aliases agree with the history."""
    store = four_champions
    command = [sys.executable, "-m", "clearsight", "rollback", "--json"]
    processes = [
        subprocess.Popen(command, env=store.env, cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    moves = sorted((json.loads(out)["from"], json.loads(out)["to"]) for out in outputs)
    assert moves == [("2", "1"), ("3", "2"), ("4", "3")], moves  # none lost, none repeated
    state = registry_state(store.settings)
    assert state["history"] == ["1"] and state["champion"] == "1"
    assert state["previous-champion"] is None


def test_cli_waits_for_the_registry_lock(four_champions: Store) -> None:
    """While one operator holds the store's lock, ``clearsight rollback`` waits, then acts."""
    store = four_champions
    assert lock_path(store.settings) == store.root / "mlflow" / "registry.lock"
    command = [sys.executable, "-m", "clearsight", "rollback", "--json"]
    with registry_lock(store.settings):
        process = subprocess.Popen(command, env=store.env, cwd=REPO, stdout=subprocess.PIPE)
        time.sleep(12)  # far longer than the command needs (about 5 s on 2 busy cores)
        assert process.poll() is None, "rollback ran while another operator held the lock"
        assert registry_state(store.settings)["champion"] == "4"
    assert process.wait(timeout=120) == 0
    assert registry_state(store.settings)["champion"] == "3"
