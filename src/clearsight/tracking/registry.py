"""Registry state in MLflow: aliases, champion history, loading versions, rollback.

Aliases: ``challenger`` always moves to the newest scored version; ``champion`` moves only
when the policy (``clearsight.promotion``, applied by ``clearsight.pipelines.promote``) passes, and the replaced champion becomes
``previous-champion``. A registered-model tag keeps the champion history, so ``rollback`` can
be repeated. Every expected failure is a one-line ``RegistryError``.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from clearsight.choices import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION
from clearsight.config import Settings
from clearsight.errors import RegistryError
from clearsight.task import DIGITS, METADATA_KEY, ImageTask
from clearsight.tracking.faults import is_transient
from clearsight.tracking.registry_lock import registry_lock
from clearsight.tracking.store import configure

if TYPE_CHECKING:  # Keras (and its backend) load only when a model does: `models` stays quick
    import keras

    from clearsight.promotion import Decision

HISTORY_TAG = "champion_history"


def alias_version(client: MlflowClient, model: str, alias: str) -> str | None:
    """The version ``alias`` names, None when it names none; a store that cannot answer right
    now raises (an outage is not "no such alias")."""
    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException as err:
        if is_transient(err):
            raise
        return None


def champion_history(client: MlflowClient, model: str) -> list[str]:
    tags = client.get_registered_model(model).tags
    return [v for v in tags.get(HISTORY_TAG, "").split(",") if v]


def _set_champion(client: MlflowClient, model: str, history: list[str]) -> None:
    """Point champion at the last of ``history`` and previous-champion at the one before."""
    client.set_registered_model_tag(model, HISTORY_TAG, ",".join(history))
    client.set_registered_model_alias(model, CHAMPION, history[-1])
    if len(history) > 1:
        client.set_registered_model_alias(model, PREVIOUS_CHAMPION, history[-2])
    else:
        with contextlib.suppress(MlflowException):
            client.delete_registered_model_alias(model, PREVIOUS_CHAMPION)


def load_version(model: str, version: str, folder: Path) -> keras.Model:
    import mlflow.keras

    folder.mkdir(parents=True, exist_ok=True)
    return mlflow.keras.load_model(f"models:/{model}/{version}", dst_path=str(folder))


def load_task(model: str, version: str) -> ImageTask:
    """The task (shape, channels, class names) a version was trained for, from its MLflow model
    metadata; a version logged before tasks were recorded is the digits' task."""
    from mlflow.models import get_model_info

    metadata = get_model_info(f"models:/{model}/{version}").metadata or {}
    body = metadata.get(METADATA_KEY)
    return ImageTask.from_metadata(body) if body else DIGITS


def version_task(model: str, version: str) -> ImageTask | None:
    """``load_task``, None when the model file cannot be read (the decision must still be
    recorded); a store that cannot answer right now raises."""
    try:
        return load_task(model, version)
    except Exception as err:  # MLflow and YAML errors come in many types
        if is_transient(err):
            raise
        return None


def load_checked(model: str, version: str, folder: Path) -> keras.Model:
    """``load_version``, with a version whose artifact is missing or corrupted refused as a
    one-line ``RegistryError``. An I/O fault that can pass (an unreachable server, a full
    disk) keeps its own type, so a flow's retry still sees it as one."""
    try:
        return load_version(model, version, folder)
    except Exception as err:  # MLflow, Keras and zip errors come in many types
        if is_transient(err):
            raise
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RegistryError(f"cannot load {model} v{version}: {reason}") from None


def resolve_version(settings: Settings, ref: str) -> tuple[MlflowClient, str, str]:
    """(client, registered name, version) for an alias (``champion``...) or a version number."""
    configure(settings)
    client = MlflowClient()
    name = settings.tracking.registered_model
    version = ref if ref.isdigit() else alias_version(client, name, ref)
    if version is None:
        raise RegistryError(f"'{name}' has no model with alias '{ref}'; train and promote first")
    return client, name, version


def load_model_ref(settings: Settings, ref: str, folder: Path) -> tuple[keras.Model, str]:
    """A model by alias (``champion``, ``challenger``...) or version number; returns its version.

    A version that cannot load (a missing or corrupted artifact) is a one-line
    ``RegistryError``: whoever asked (promotion, the service's swap, the CLI) refuses it. An
    I/O fault that can pass (an unreachable or restarting store) keeps its own type
    (``tracking.faults.is_transient``), so the caller waits and asks again instead.
    """
    _, name, version = resolve_version(settings, ref)
    return load_checked(name, version, folder), version


@dataclass(frozen=True)
class VersionInfo:
    """A registered version with what a consumer reports about it (plain values)."""

    name: str
    version: str
    run_id: str | None
    aliases: tuple[str, ...]
    run_tags: dict[str, str] = field(default_factory=dict)


def describe_version(settings: Settings, ref: str) -> VersionInfo:
    """Name, version, run and the run's tags of an alias or version number: one cheap call
    chain (no artifact download), which is what the service polls to notice an alias move."""
    client, name, version = resolve_version(settings, ref)
    try:
        model_version = client.get_model_version(name, version)
        run_id = model_version.run_id
        tags = dict(client.get_run(run_id).data.tags) if run_id else {}
    except MlflowException as err:
        if is_transient(err):
            raise
        raise RegistryError(f"cannot read {name} v{version}: {str(err).splitlines()[0]}") from None
    return VersionInfo(name, version, run_id, tuple(model_version.aliases), tags)


def load_run_file(settings: Settings, run_id: str, artifact: str, folder: Path) -> Path | None:
    """One artifact of a run, downloaded into ``folder``; None when the run has no such file.

    A store that cannot answer right now raises (``tracking.faults.is_transient``): "the file
    is not there" and "the server is not there" lead to different decisions.
    """
    configure(settings)
    try:
        return Path(MlflowClient().download_artifacts(run_id, artifact, str(folder)))
    except (MlflowException, OSError) as err:
        if is_transient(err):
            raise
        return None


def latest_version(client: MlflowClient, model: str) -> str:
    versions = client.search_model_versions(f"name='{model}'")
    if not versions:
        raise RegistryError(f"registered model '{model}' has no versions; train one first")
    return str(max(int(v.version) for v in versions))


class RegistrySession:
    """One operator's hold on the registry (under ``registry_lock``) for a promotion: read the
    champion, load versions, move aliases and record the decision. The decision itself is
    made by the caller (``clearsight.pipelines.promote``) from what is loaded here."""

    def __init__(self, client: MlflowClient, name: str, folder: Path) -> None:
        self.client = client
        self.name = name
        self.folder = folder

    def latest(self) -> str:
        return latest_version(self.client, self.name)

    def champion(self) -> str | None:
        return alias_version(self.client, self.name, CHAMPION)

    def load(self, version: str) -> keras.Model:
        """A version's model (a one-line ``RegistryError`` when it cannot load)."""
        return load_checked(self.name, version, self.folder / f"v{version}")

    def mark_challenger(self, version: str) -> None:
        self.client.set_registered_model_alias(self.name, CHALLENGER, version)

    def crown(self, version: str) -> None:
        """``version`` becomes the champion, the champion before it the previous champion."""
        history = champion_history(self.client, self.name)
        if history[-1:] != [version]:  # a retried promotion must not list a version twice
            history.append(version)
        _set_champion(self.client, self.name, history)

    def task(self, version: str) -> ImageTask:
        """What ``version`` was trained for (shape, channels, class names)."""
        return load_task(self.name, version)

    def record(self, decision: Decision) -> None:
        record_decision(self.client, decision)


@contextlib.contextmanager
def registry_session(settings: Settings) -> Iterator[RegistrySession]:
    """One operator at a time from reading the champion to writing the aliases: a rollback or
    another promotion in between would otherwise be overwritten from a stale read."""
    configure(settings)
    client = MlflowClient()
    with registry_lock(settings), tempfile.TemporaryDirectory() as tmp:
        yield RegistrySession(client, settings.tracking.registered_model, Path(tmp))


MODEL_DESCRIPTION = (
    "Image classifier ({task}) with measured explanations. Versions are "
    "promoted by clearsight's policy on a frozen holdout: `@champion` is served, "
    "`@previous-champion` is where `clearsight rollback` returns, `@challenger` was judged "
    "last. Each version's description starts with its task (input shape, class names) and "
    "holds its promotion decision and the reasons."
)


def task_line(task: ImageTask) -> str:
    """The first line of a version's description: what it takes and what it answers."""
    shape = ", ".join(str(d) for d in (-1, *task.input_shape))
    return f"Task: {task.describe()}; input [{shape}]; classes: {', '.join(task.class_names)}."


def record_decision(client: MlflowClient, decision: Decision) -> None:
    """The decision where people look for it in the MLflow UI: the version's description
    and tags (verdict, reason), the registered model's description, and the challenger's
    run (artifacts, tags, ``promotion.*`` metrics)."""
    name, version = decision.model, decision.challenger_version
    mv = client.get_model_version(name, version)
    verdict = "promoted" if decision.promoted else "rejected"
    if mv.run_id:
        client.log_text(mv.run_id, decision.to_markdown(), "promotion/decision.md")
        client.log_dict(mv.run_id, decision.to_dict(), "promotion/decision.json")
        client.set_tag(mv.run_id, "promotion.verdict", verdict)
        client.set_tag(mv.run_id, "promotion.reason", decision.reason[:500])
        for key, value in decision.challenger_metrics.items():
            client.log_metric(mv.run_id, f"promotion.{key}", value)
    task = version_task(name, version)
    first = f"{task_line(task)}\n\n" if task is not None else ""
    description = first + decision.to_markdown()
    client.update_model_version(name, version, description=description)
    client.set_model_version_tag(name, version, "promotion", verdict)
    client.set_model_version_tag(name, version, "promotion.reason", decision.reason[:500])
    if not client.get_registered_model(name).description:
        client.update_registered_model(
            name, description=MODEL_DESCRIPTION.format(task=task.describe() if task else "images")
        )


def _registered(settings: Settings) -> tuple[MlflowClient, str, list[str]]:
    """(client, registered name, champion history); a clear error when there is no model."""
    configure(settings)
    client = MlflowClient()
    name = settings.tracking.registered_model
    try:
        return client, name, champion_history(client, name)
    except MlflowException:
        raise RegistryError(
            f"registered model '{name}' does not exist yet; train one first"
        ) from None


def rollback(settings: Settings) -> tuple[str, str]:
    """Make the previous champion the champion again; returns (from_version, to_version)."""
    with registry_lock(settings):  # the history read and written back by one operator
        client, name, history = _registered(settings)
        if len(history) < 2:
            raise RegistryError(f"'{name}' has no previous champion to roll back to")
        current = history.pop()
        _set_champion(client, name, history)
        client.set_model_version_tag(name, current, "rolled_back", "true")
    return current, history[-1]


def registry_state(settings: Settings) -> dict[str, Any]:
    """Aliases and history, for the CLI and flow summaries."""
    client, name, history = _registered(settings)
    return {
        "model": name,
        CHAMPION: alias_version(client, name, CHAMPION),
        CHALLENGER: alias_version(client, name, CHALLENGER),
        PREVIOUS_CHAMPION: alias_version(client, name, PREVIOUS_CHAMPION),
        "history": history,
    }
