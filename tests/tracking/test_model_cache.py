"""The local model cache: never a stale version, entries whole or absent, at most N kept."""

import json
import os
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest

from clearsight.config import Settings
from clearsight.errors import RegistryError
from clearsight.task import DIGITS, ImageTask
from clearsight.tracking import model_cache, registry
from clearsight.tracking import store as tracking
from clearsight.tracking.model_cache import (
    MODEL_FILE,
    VersionKey,
    cached_entry,
    load_cached,
    resolve_key,
    write_entry,
)

NAME = "clearsight-cnn"


@pytest.fixture
def store(settings: Settings) -> mlflow.MlflowClient:
    """A real SQLite registry with two versions (no artifacts: only the tables are read)."""
    tracking.configure(settings)
    client = mlflow.MlflowClient()
    client.create_registered_model(NAME)
    for _ in range(2):
        client.create_model_version(NAME, source="file:///nowhere")
    client.set_registered_model_alias(NAME, "champion", "1")
    return client


def tiny_model() -> keras.Model:
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))


def test_tracking_uri_agrees_with_the_store(settings: Settings, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert model_cache.tracking_uri(settings) == tracking.tracking_uri(settings)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert model_cache.tracking_uri(settings) == tracking.tracking_uri(settings)


def test_sqlite_lookup_follows_the_alias(settings: Settings, store, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    key = resolve_key(settings, "champion")
    created = store.get_model_version(NAME, "1").creation_timestamp
    assert (key.version, key.created) == ("1", created)
    assert model_cache._sqlite_key(key.tracking_uri, NAME, "champion") == key  # no MLflow
    store.set_registered_model_alias(NAME, "champion", "2")  # a promotion moves it
    assert resolve_key(settings, "champion").version == "2"
    assert resolve_key(settings, "1") == key
    with pytest.raises(RegistryError, match="no model with alias 'nope'"):
        resolve_key(settings, "nope")


def test_a_recreated_store_is_another_entry(settings: Settings, tmp_path: Path) -> None:
    old = VersionKey("sqlite:///a.db", NAME, "1", 1000)
    assert old.entry_name != VersionKey("sqlite:///a.db", NAME, "1", 2000).entry_name
    assert old.entry_name != VersionKey("sqlite:///b.db", NAME, "1", 1000).entry_name
    model_file = tmp_path / MODEL_FILE
    model_file.write_bytes(b"weights")
    write_entry(settings, old, model_file, DIGITS, keep=4)
    assert cached_entry(settings, old) is not None
    assert cached_entry(settings, VersionKey("sqlite:///a.db", NAME, "1", 2000)) is None


def test_entries_are_whole_and_only_the_newest_kept(settings: Settings, tmp_path: Path) -> None:
    model_file = tmp_path / MODEL_FILE
    model_file.write_bytes(b"weights")
    assert settings.cache_dir is not None
    models = settings.cache_dir / "models"
    models.mkdir(parents=True)
    stale = models / ".tmp-killed"
    stale.mkdir()
    os.utime(stale, (0, 0))  # left by a run killed long ago
    keys = [VersionKey("sqlite:///a.db", NAME, str(v), v) for v in range(1, 7)]
    for age, key in enumerate(keys):
        entry = write_entry(settings, key, model_file, DIGITS, keep=4)
        os.utime(entry, (1000 + age, 1000 + age))
    assert cached_entry(settings, keys[2]) is not None  # used again: now the newest
    write_entry(settings, VersionKey("sqlite:///a.db", NAME, "7", 7), model_file, DIGITS, keep=4)
    kept = sorted(p.name for p in models.iterdir())
    assert len(kept) == 4 and not any(name.startswith(".tmp-") for name in kept)
    assert cached_entry(settings, keys[2]) is not None and cached_entry(settings, keys[0]) is None
    entry = cached_entry(settings, keys[2])
    assert entry is not None
    assert json.loads((entry / "entry.json").read_text())["version"] == "3"


def test_load_cached_skips_mlflow_when_warm_and_reloads_a_damaged_entry(
    settings: Settings, monkeypatch
) -> None:
    key = VersionKey("sqlite:///x.db", NAME, "3", 123)
    task = ImageTask(8, 8, 1, ("a", "b"), digit_like=False)
    model = tiny_model()
    loads: list[str] = []

    def load_checked(name: str, version: str, folder: Path) -> keras.Model:
        loads.append(version)
        (folder / "data").mkdir(parents=True, exist_ok=True)
        model.save(folder / "data" / MODEL_FILE)  # where mlflow.keras puts it
        return model

    monkeypatch.setattr(model_cache, "resolve_key", lambda settings, ref: key)
    monkeypatch.setattr(registry, "load_checked", load_checked)
    monkeypatch.setattr(registry, "load_task", lambda name, version: task)
    monkeypatch.setattr(tracking, "configure", lambda settings: "0")
    x = np.ones((1, 4), np.float32)

    def load(folder: str) -> tuple[keras.Model, str, ImageTask]:
        return load_cached(settings, "champion", settings.home / folder)

    settings = settings.model_copy(update={"home": settings.data_dir})
    _, version, first_task = load("a")
    warm, version, warm_task = load("b")
    assert loads == ["3"] and version == "3" and warm_task == task == first_task
    np.testing.assert_allclose(warm.predict(x, verbose=0), model.predict(x, verbose=0))
    entry = cached_entry(settings, key)
    assert entry is not None
    (entry / MODEL_FILE).write_bytes(b"not a zip")
    load("c")
    assert loads == ["3", "3"]  # the damaged entry was dropped and the registry asked again
    load_cached(settings, "champion", settings.home / "d", use_cache=False)
    assert loads == ["3", "3", "3"]


def test_no_store_yet_is_a_clear_error_and_creates_none(settings: Settings, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(RegistryError, match="does not exist yet"):
        resolve_key(settings, "champion")
    assert settings.mlflow_dir is not None and not settings.mlflow_dir.exists()
