"""Labelled images people send back (the service's ``POST /feedback``) as one incoming batch.

A feedback request becomes exactly one ``.npz`` batch in the incoming folder, in the Keras
``mnist.npz`` layout the ``npz`` reader takes (``x_train``, ``y_train``) plus the request ids
the images came from and, when the service checked them, what it answered for each image
(``served_label``, ``served_confidence``, ``served_version``: what ingest's label check
compares the given labels with, ``clearsight.data.label_check``). It is written to a dot-named temporary file first and renamed into
place, so the incoming watcher (which skips dot names) sees a whole batch or none, and a
unique name (UTC time + a random suffix) means concurrent requests never overwrite each other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from clearsight.errors import DataSourceError
from clearsight.files import atomic_write
from clearsight.task import DIGITS, ImageTask

PREFIX = "feedback"


@dataclass(frozen=True)
class FeedbackBatch:
    """Where a feedback batch was written and how many images it holds."""

    path: Path
    count: int

    @property
    def name(self) -> str:
        return self.path.name


def batch_name(now: datetime | None = None) -> str:
    """``feedback-20261129T213000123456Z-1a2b3c4d.npz``: sortable by time, unique by uuid."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{PREFIX}-{stamp}-{uuid.uuid4().hex[:8]}.npz"


def write_feedback_batch(
    folder: Path,
    pixels: np.ndarray,
    labels: np.ndarray | list[int],
    request_ids: list[str | None] | None = None,
    served: dict[str, np.ndarray] | None = None,
    *,
    task: ImageTask = DIGITS,
) -> FeedbackBatch:
    """Write uint8 images of ``task``'s stored shape ((N, H, W) grey, (N, H, W, 3) colour)
    with their true labels (class indices) as one incoming batch, atomically.

    ``served``: the service's answers per image (``served_label``, ``served_confidence``,
    ``served_version``), stored beside the images for the label check at ingest.
    """
    images = np.asarray(pixels)
    targets = np.asarray(labels, dtype=np.int64)
    if images.shape[1:] != task.stored_shape or images.ndim < 3 or not len(images):
        wanted = ", ".join(str(d) for d in ("N", *task.stored_shape))
        raise DataSourceError(f"feedback needs ({wanted}) images, got shape {images.shape}")
    if images.dtype != np.uint8:
        raise DataSourceError(f"feedback images must be uint8 pixels, got {images.dtype}")
    last = task.n_classes - 1
    if targets.shape != (len(images),) or targets.min() < 0 or targets.max() > last:
        raise DataSourceError(f"feedback needs one label in 0-{last} per image")
    ids = [r or "" for r in (request_ids or [None] * len(images))]
    if len(ids) != len(images):
        raise DataSourceError(f"{len(ids)} request ids for {len(images)} images")
    arrays = {"x_train": images, "y_train": targets, "request_id": np.asarray(ids, dtype=str)}
    for key, column in (served or {}).items():
        if len(column) != len(images):
            raise DataSourceError(f"{len(column)} {key} values for {len(images)} images")
        arrays[key] = np.asarray(column)
    target = atomic_write(folder / batch_name(), lambda h: np.savez(h, **arrays), ".npz")  # type: ignore[arg-type]  # numpy's stub lets **arrays fill allow_pickle: bool
    return FeedbackBatch(target, len(images))


_counts: dict[tuple[str, str], int] = {}  # (name, fingerprint) -> images, read once each


def pending_images(folder: Path) -> int:
    """Feedback images in ``folder`` that no ingest has finished yet (the /feedback backlog
    cap): batches without a final ledger outcome, claimed ones included.

    Lists only ``feedback-*.npz`` (never the dot-named temporary files that come and go while
    it runs); each batch's image count is read once.
    """
    from clearsight.data.incoming import DONE, fingerprint, read_ledger

    if not folder.is_dir():
        return 0
    ledger = read_ledger(folder)
    total = 0
    for path in folder.glob(f"{PREFIX}-*.npz"):
        try:
            stamp = fingerprint(path)
            entry = ledger.get(path.name) or {}
            if entry.get("fingerprint") == stamp and entry.get("status", DONE) == DONE:
                continue
            key = (path.name, stamp)
            if len(_counts) > 10_000:  # names of long-ingested batches: start afresh
                _counts.clear()
            if key not in _counts:
                with np.load(path, allow_pickle=False) as data:
                    _counts[key] = len(data["y_train"])
        except (OSError, KeyError, ValueError):  # taken meanwhile, or not ours
            continue
        total += _counts[key]
    return total
