"""From the MLflow registry to a self-contained bento: import the champion, build, export.

BentoML-specific, so it lives in the serving adapter; ``clearsight serve`` and
``clearsight build-service`` load it from the checkout, and the retrain flow calls it.

``import_model`` copies a registry version (``@champion`` by default) into the BentoML model
store as ``<registered name>:v<version>-<run id>``: the ``.keras`` file plus its provenance
(registered name and version, run id, data digests, contract hash, package versions) and its
task (input shape, class names, digit-likeness: ``clearsight.task``, under ``METADATA_KEY``)
as model metadata, so the service knows what it serves without MLflow. The tag names the exact
registry entry, so importing again is a no-op and two registries never collide. ``build_service`` then builds the ``serving/`` service into a bento
pinned to that model through a bento argument; serving it needs the BentoML store only, never
MLflow. ``bentoml export`` (``export_service``) writes one archive that also holds the model.

BENTOML_HOME decides where the stores are (``~/bentoml`` by default, as BentoML's own CLI).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clearsight.choices import CHAMPION
from clearsight.inference.provenance import Provenance
from clearsight.inference.served_task import stored_task as task_in
from clearsight.task import METADATA_KEY, ImageTask

if TYPE_CHECKING:
    import keras
    from bentoml import Model as StoredModel

    from clearsight.config import Settings

MODEL_FILE = "model.keras"
SERVICE_IMPORT = "serving.service:Clearsight"
SERVICE_MODULE = "serving.service"
BENTO_NAME = "clearsight"
MODEL_ARGUMENT = "model"
# What a bento holds: the service, the library beside it, the pinned serving packages.
BUILD_CONFIG = {
    "service": SERVICE_IMPORT,
    "name": BENTO_NAME,
    "include": ["serving/**/*.py", "serving/ui/*", "clearsight/**/*.py"],
    "labels": {"project": "clearsight"},
    "python": {"requirements_txt": "serving/requirements.txt", "lock_packages": False},
}


@dataclass(frozen=True)
class ImportedModel:
    """A registry version in the BentoML store; ``created`` is False when it already was."""

    tag: str
    provenance: Provenance
    created: bool


@dataclass(frozen=True)
class BuiltService:
    """A bento in the store, the model it serves, and where it lies."""

    bento_tag: str
    model_tag: str
    path: Path
    provenance: Provenance


def model_tag(name: str, version: str, run_id: str | None) -> str:
    """``name:v<version>-<run id>``: unique per registry entry, valid as a BentoML tag."""
    suffix = f"-{run_id.lower()}" if run_id else ""
    return f"{name.lower()}:v{version}{suffix}"


def _metadata(provenance: Provenance, task: ImageTask | None = None) -> dict[str, Any]:
    """Provenance and the task as BentoML model metadata (which refuses None values)."""
    metadata = {k: v for k, v in provenance.to_dict().items() if v is not None}
    if task is not None:
        metadata[METADATA_KEY] = task.to_metadata()
    return metadata


def import_model(settings: Settings, ref: str = CHAMPION) -> ImportedModel:
    """Copy a registry model (alias or version number) with its provenance into BentoML."""
    import bentoml
    from bentoml.exceptions import NotFound

    from clearsight.tracking.registry import describe_version, load_model_ref, load_task

    info = describe_version(settings, ref)
    name, version, run_id, tags = info.name, info.version, info.run_id, info.run_tags
    tag = model_tag(name, version, run_id)
    try:
        stored = bentoml.models.get(tag)
        return ImportedModel(str(stored.tag), stored_provenance(stored), created=False)
    except NotFound:
        pass
    provenance = Provenance.from_run_tags(
        name,
        version,
        run_id,
        tags,
        registry_alias=ref if not ref.isdigit() else preferred_alias(list(info.aliases)),
        imported_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    task = load_task(name, version)  # the digits' for a version logged before tasks
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = load_model_ref(settings, version, Path(tmp))
        labels = {"registered_model": name, "registry_version": version, "run_id": run_id or ""}
        metadata = _metadata(provenance, task)
        with bentoml.models.create(tag, labels=labels, metadata=metadata) as stored:
            model.save(stored.path_of(MODEL_FILE))
    return ImportedModel(tag, provenance, created=True)


def preferred_alias(aliases: list[str]) -> str | None:
    """The alias to report for a version imported by number: champion if it is one."""
    if CHAMPION in aliases:
        return CHAMPION
    return min(aliases) if aliases else None


def stored_provenance(stored: StoredModel) -> Provenance:
    return Provenance.from_dict(dict(stored.info.metadata))


def stored_task(stored: StoredModel) -> ImageTask | None:
    """The task stored with the model at import (None for one imported before tasks were:
    the service then decides from the model's shapes, ``served_task``)."""
    return task_in(dict(stored.info.metadata))


def load_stored_model(stored: StoredModel) -> keras.Model:
    """The Keras model of a BentoML store entry made by ``import_model`` (not compiled:
    serving never trains)."""
    import keras

    return keras.saving.load_model(stored.path_of(MODEL_FILE), compile=False)


def stage_build_context(folder: Path) -> Path:
    """Copy the installed ``clearsight`` and ``serving`` packages side by side into ``folder``
    with a bentofile: the bento then imports both exactly as an installed wheel does (no path
    edits), whether they come from a checkout or from site-packages."""
    import yaml

    import clearsight
    import serving

    for package in (clearsight, serving):
        source = Path(package.__file__).resolve().parent
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(source, folder / source.name, ignore=ignore, dirs_exist_ok=True)
    bentofile = folder / "bentofile.yaml"
    bentofile.write_text(yaml.safe_dump(BUILD_CONFIG, sort_keys=False))
    return bentofile


def build_service(settings: Settings, ref: str = CHAMPION) -> BuiltService:
    """Import the registry's model (``@champion`` by default) and build the bento serving it.

    The bento holds the service and the library (``BUILD_CONFIG``) and the packages of the
    ``serving`` dependency group pinned from uv.lock (serving/requirements.txt, ``make
    serving-requirements``), so the build needs no package index. The bento argument pins it
    to the imported model.
    """
    import bentoml

    imported = import_model(settings, ref)
    # The service module reads the model tag at import: import it afresh for this build.
    sys.modules.pop(SERVICE_MODULE, None)
    provenance = imported.provenance
    with tempfile.TemporaryDirectory(prefix="clearsight-bento-") as tmp:
        bentofile = stage_build_context(Path(tmp))
        with contextlib.chdir(tmp):  # BentoML resolves the build file's paths under the cwd
            bento = bentoml.bentos.build_bentofile(
                str(bentofile),
                name=BENTO_NAME,
                build_ctx=tmp,
                args={MODEL_ARGUMENT: imported.tag},
                labels={
                    "registered_model": provenance.name,
                    "registry_version": provenance.version,
                    "run_id": provenance.run_id or "",
                },
            )
    return BuiltService(str(bento.tag), imported.tag, Path(bento.path), provenance)


def export_service(bento_tag: str, destination: Path) -> Path:
    """``bentoml export``: one archive with the bento *and* its model, for another host."""
    import bentoml

    destination.parent.mkdir(parents=True, exist_ok=True)
    return Path(bentoml.bentos.export_bento(bento_tag, str(destination)))


def serve_command(
    target: str, *, host: str, port: int, model: str | None = None, working_dir: Path | None = None
) -> list[str]:
    """The ``bentoml serve`` command line for a bento tag or the source service."""
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        target,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if working_dir is not None:
        command += ["--working-dir", str(working_dir)]
    if model is not None:
        command += ["--arg", f"{MODEL_ARGUMENT}={model}"]
    return command
