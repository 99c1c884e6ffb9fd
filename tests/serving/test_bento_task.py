"""The task travels in the BentoML model's metadata: written at import, read at start-up."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from clearsight.inference.provenance import Provenance
from clearsight.task import METADATA_KEY, ImageTask
from serving.bento_store import _metadata, stored_provenance, stored_task

SHAPES = ImageTask(32, 32, 3, ("circle", "square", "triangle"), digit_like=False)


def stored(metadata: dict[str, Any]) -> Any:
    """What the service reads of a BentoML model entry: ``info.metadata``."""
    return SimpleNamespace(info=SimpleNamespace(metadata=metadata))


def test_the_task_is_stored_beside_the_provenance_and_read_back() -> None:
    provenance = Provenance(name="shapes", version="2", run_id="r9")
    metadata = _metadata(provenance, SHAPES)
    assert metadata[METADATA_KEY] == SHAPES.to_metadata()
    entry = stored(metadata)
    assert stored_task(entry) == SHAPES
    assert stored_provenance(entry) == provenance  # the task is no provenance field


def test_a_model_imported_before_tasks_has_none() -> None:
    old = _metadata(Provenance(name="digits", version="1"))
    assert METADATA_KEY not in old
    assert stored_task(stored(old)) is None  # the service decides from the model's shapes
