"""A local cache of registry models, so a one-image CLI command does not go through MLflow.

Loading a version through MLflow costs an ``import mlflow`` (about 2 s), the artifact download
and MLflow's flavour machinery, every time. A version's model never changes once registered,
so ``load_cached`` keeps its ``model.keras`` and its task (shape, channels, class names) in
``settings.cache_dir/models/<entry>`` and loads them with Keras alone on the next run.

Safety, because a cache that serves the wrong model is worse than none:

- The alias is resolved to a version on every call (an alias moved by a promotion or a
  rollback is seen at once). For the default SQLite store the lookup reads the registry's
  tables directly, read-only, with the standard library; any other store, or a schema this
  code does not recognise, is asked through ``MlflowClient`` as usual.
- An entry is keyed on the tracking URI, the registered name, the version *and* the version's
  creation time: a store that was wiped and re-filled reuses version numbers, not timestamps.
- An entry appears whole or not at all (written in a temporary folder, then renamed), and one
  that fails to load is deleted and the model is loaded from the registry instead.
- Only the newest ``tracking.model_cache_entries`` entries (by last use) are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clearsight.config import Settings
from clearsight.errors import RegistryError
from clearsight.task import ImageTask

if TYPE_CHECKING:
    import keras

MODEL_FILE = "model.keras"
TASK_FILE = "task.json"
ENTRY_FILE = "entry.json"
DELETED_STAGE = "Deleted_internal"  # how MLflow's SQL store marks a deleted version
STALE_TEMP_SECONDS = 3600.0  # a half-written entry older than this was left by a killed run


@dataclass(frozen=True)
class VersionKey:
    """What identifies one registered version's model for ever."""

    tracking_uri: str
    name: str
    version: str
    created: int  # the version's creation time (ms), as the registry records it

    @property
    def entry_name(self) -> str:
        raw = json.dumps([self.tracking_uri, self.name, self.version, self.created])
        digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.name)
        return f"{safe}-v{self.version}-{digest}"


def tracking_uri(settings: Settings) -> str:
    """``tracking.store.tracking_uri`` without importing MLflow (tested to agree with it)."""
    if uri := os.environ.get("MLFLOW_TRACKING_URI") or settings.tracking.tracking_uri:
        return uri
    assert settings.mlflow_dir is not None
    return f"sqlite:///{settings.mlflow_dir / 'mlflow.db'}"


def _sqlite_key(uri: str, name: str, ref: str) -> VersionKey | None:
    """The key from a local SQLite store's tables; None when the store cannot tell (another
    schema, a version not found): the caller then asks MLflow, which explains."""
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.is_file():  # no store yet: say so, rather than create an empty one to ask it
        raise RegistryError(f"registered model '{name}' does not exist yet; train one first")
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
        ) as db:
            if ref.isdigit():
                version = ref
            else:
                rows = db.execute(
                    "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                    (name, ref),
                ).fetchall()
                if len(rows) > 1:  # several workspaces: leave it to MLflow
                    return None
                if not rows:
                    raise RegistryError(
                        f"'{name}' has no model with alias '{ref}'; train and promote first"
                    )
                version = str(rows[0][0])
            found = db.execute(
                "SELECT creation_time FROM model_versions WHERE name = ? AND version = ? "
                "AND (current_stage IS NULL OR current_stage != ?)",
                (name, int(version), DELETED_STAGE),
            ).fetchall()
    except sqlite3.Error:
        return None
    if len(found) != 1 or found[0][0] is None:
        return None
    return VersionKey(uri, name, version, int(found[0][0]))


def resolve_key(settings: Settings, ref: str) -> VersionKey:
    """The version an alias (``champion``...) or a version number names now, with its
    creation time; a cheap lookup every time, so a moved alias is never missed."""
    uri = tracking_uri(settings)
    name = settings.tracking.registered_model
    if uri.startswith("sqlite:///") and (key := _sqlite_key(uri, name, ref)) is not None:
        return key
    from mlflow.exceptions import MlflowException

    from clearsight.tracking.faults import is_transient
    from clearsight.tracking.registry import resolve_version

    client, name, version = resolve_version(settings, ref)
    try:
        created = client.get_model_version(name, version).creation_timestamp
    except MlflowException as err:
        if is_transient(err):
            raise
        raise RegistryError(f"cannot read {name} v{version}: {str(err).splitlines()[0]}") from None
    return VersionKey(uri, name, version, int(created or 0))


def _models_dir(settings: Settings) -> Path:
    assert settings.cache_dir is not None
    return settings.cache_dir / "models"


def cached_entry(settings: Settings, key: VersionKey) -> Path | None:
    """The folder of a complete entry for ``key``, marked as just used; None when absent."""
    entry = _models_dir(settings) / key.entry_name
    if not (entry / MODEL_FILE).is_file() or not (entry / TASK_FILE).is_file():
        return None
    with contextlib.suppress(OSError):
        os.utime(entry)
    return entry


def write_entry(
    settings: Settings, key: VersionKey, model_file: Path, task: ImageTask, keep: int
) -> Path:
    """Copy ``model_file`` and the task into a new entry (atomically), then keep the newest
    ``keep`` entries. Another process writing the same entry at once is harmless."""
    models = _models_dir(settings)
    models.mkdir(parents=True, exist_ok=True)
    target = models / key.entry_name
    temp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=models))
    try:
        shutil.copyfile(model_file, temp / MODEL_FILE)
        (temp / TASK_FILE).write_text(json.dumps(task.to_metadata()))
        (temp / ENTRY_FILE).write_text(json.dumps(vars(key) | {"cached_at": time.time()}))
        try:
            os.rename(temp, target)
        except OSError:  # the same entry was just written by another run: keep that one
            if not (target / MODEL_FILE).is_file():
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    prune(settings, keep)
    return target


def prune(settings: Settings, keep: int) -> None:
    """Delete all but the ``keep`` most recently used entries, and stale half-written ones."""
    models = _models_dir(settings)
    if not models.is_dir():
        return
    entries, now = [], time.time()
    for path in models.iterdir():
        with contextlib.suppress(OSError):
            if path.name.startswith(".tmp-"):
                if now - path.stat().st_mtime > STALE_TEMP_SECONDS:
                    shutil.rmtree(path, ignore_errors=True)
            elif path.is_dir():
                entries.append((path.stat().st_mtime, path))
    entries.sort(reverse=True)
    for _, path in entries[keep:]:
        shutil.rmtree(path, ignore_errors=True)


def _load_entry(entry: Path) -> tuple[keras.Model, ImageTask]:
    import keras

    task = ImageTask.from_metadata(json.loads((entry / TASK_FILE).read_text()))
    # compile=False: the CLI predicts and takes gradients, it never fits or evaluates.
    return keras.saving.load_model(entry / MODEL_FILE, compile=False), task


def load_cached(
    settings: Settings, ref: str, folder: Path, *, use_cache: bool = True
) -> tuple[keras.Model, str, ImageTask]:
    """(model, version, task) of an alias or version number: from the cache when it holds that
    version, else through MLflow (``registry.load_checked``), filling the cache on the way."""
    keep = settings.tracking.model_cache_entries if use_cache else 0
    key = resolve_key(settings, ref)
    if keep and (entry := cached_entry(settings, key)) is not None:
        try:
            model, task = _load_entry(entry)
            return model, key.version, task
        except Exception:  # a damaged entry (Keras, zip and JSON errors): drop it, reload
            shutil.rmtree(entry, ignore_errors=True)
    from clearsight.tracking.registry import load_checked, load_task
    from clearsight.tracking.store import configure

    configure(settings)  # the fast lookup above did not point MLflow at the store
    model = load_checked(key.name, key.version, folder)
    task = load_task(key.name, key.version)
    if keep:
        downloaded = sorted(folder.rglob(MODEL_FILE))
        if not downloaded:  # a flavour that saved another format: write the Keras file
            downloaded = [folder / MODEL_FILE]
            model.save(downloaded[0])
        with contextlib.suppress(OSError):  # a cache that cannot be written is no error
            write_entry(settings, key, downloaded[0], task, keep)
    return model, key.version, task
