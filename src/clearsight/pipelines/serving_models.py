"""The models that served a window of traffic, loaded from the registry by version.

The monitor explains every logged image with the model that answered it, not the current
champion: after a promotion or a rollback, a window holds images answered by the old version,
and explaining them with the new one would test the wrong model's attributions (and hide a
served version whose attributions went wrong). Each record names its version and training run
(``TrafficRecord.model_version`` and ``run_id``); a version is used only when the registry
still holds it under that run, since a recreated registry reuses version numbers. Records whose
version cannot be loaded are left out of the attribution tests, and the report says so.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from clearsight.config import Settings
from clearsight.errors import ClearsightError, RegistryError
from clearsight.monitoring.check import ServingKey, serving_keys
from clearsight.monitoring.traffic import TrafficWindow
from clearsight.task import ImageTask

if TYPE_CHECKING:
    from clearsight.pipelines.monitor import VersionReference


@dataclass(frozen=True)
class ServingModels:
    """A loaded model per serving version of a window, and a note per version left out.

    ``tasks``: what each of those models answers (shape, class names), from its registry
    metadata, so that a window served by versions of different tasks is explained with each
    version's own."""

    models: dict[ServingKey, object]
    notes: list[str]
    tasks: dict[ServingKey, ImageTask] = field(default_factory=dict)


def serving_models(
    settings: Settings, window: TrafficWindow, champion: VersionReference
) -> ServingModels:
    """The model of every (version, run) that served ``window``; the champion is reused."""
    models: dict[ServingKey, object] = {}
    tasks: dict[ServingKey, ImageTask] = {}
    notes = []
    for key, rows in serving_keys(window).items():
        version, run_id = key
        try:
            models[key] = _load(settings, version, run_id, champion)
            tasks[key] = champion.task if version == champion.version else _task(settings, version)
        except (ClearsightError, OSError) as err:
            reason = err.one_line() if isinstance(err, ClearsightError) else str(err)
            notes.append(
                f"{int(rows.sum())} record(s) served by v{version or '?'} left out of the "
                f"attribution tests: {reason}"
            )
    return ServingModels(models, notes, tasks)


def _task(settings: Settings, version: str) -> ImageTask:
    """The task ``version`` was trained for (the digits' for one logged before tasks)."""
    from clearsight.tracking.registry import version_task

    task = version_task(settings.tracking.registered_model, version)
    if task is None:
        raise RegistryError(f"cannot read v{version}'s model metadata from the registry")
    return task


def _load(settings: Settings, version: str, run_id: str, champion: VersionReference) -> object:
    from clearsight.tracking.registry import describe_version, load_model_ref

    if not version.isdigit():
        raise RegistryError(f"'{version}' is not a registry version")
    if version == champion.version and run_id in ("", champion.run_id):
        return champion.model
    info = describe_version(settings, version)
    if run_id and info.run_id != run_id:
        raise RegistryError(
            f"registry v{version} comes from run {info.run_id}, the records name run {run_id}"
        )
    with tempfile.TemporaryDirectory(prefix="clearsight-monitor-") as tmp:
        model, _ = load_model_ref(settings, version, Path(tmp) / "model")
    return model
