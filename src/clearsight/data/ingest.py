"""Incoming batches become data versions, or go to quarantine with their report.

A batch (one labelled image up to a whole data set: ``.npz``, an IDX folder, a
``<label>/*.png`` tree) is checked twice with the data contract (``clearsight.data.contract``):

1. **on its own**, with the rules each image must meet (labels, 28x28, pixel range, no NaN,
   intensity and ink within the reference range, no duplicate inside the batch, no image of
   the frozen holdout): a one-image batch cannot be class-balanced, so set-level rules wait;
2. **merged** into the newest data version, with every rule: class balance and mean features
   of the merged set, no image that is already in the training data, no holdout image.

A batch that passes is stored as the next data version (``clearsight.data.versions``); one
that fails (or cannot be read) is moved to ``settings.quarantine_dir`` beside a JSON and a
Markdown report saying why. The incoming ledger's claims (``clearsight.data.incoming``) make
sure two pollers never ingest a batch twice, and one ingest lock orders versions, so the
merged content a check saw is the content the new version holds.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clearsight.config import Settings
from clearsight.data.contract import ValidationReport, check_contract, load_reference
from clearsight.data.dataset import Dataset
from clearsight.data.incoming import (
    CLAIM_TIMEOUT,
    Batch,
    claim,
    mark_seen,
    new_batches,
    release,
)
from clearsight.data.profile import profile_dataset
from clearsight.data.sources import load, load_folder, load_idx, load_npz
from clearsight.data.splits import HoldoutStore
from clearsight.data.versions import BatchRef, VersionStore, merge, newest
from clearsight.errors import DataSourceError
from clearsight.files import exclusive_lock

INGEST_LOCK = ".ingest.lock"
ACCEPTED = "accepted"
QUARANTINED = "quarantined"


@dataclass(frozen=True)
class BatchCheck:
    """Both checks of one batch; ``error`` when it could not even be read."""

    passed: bool
    reason: str
    own: ValidationReport | None = None
    merged: ValidationReport | None = None
    n_images: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "n_images": self.n_images,
            "own": self.own.to_dict() if self.own else None,
            "merged": self.merged.to_dict() if self.merged else None,
        }

    def to_markdown(self, title: str) -> str:
        parts = [f"# {title}", "", self.reason, ""]
        for heading, report in (("The batch on its own", self.own), ("Merged", self.merged)):
            if report is not None:
                body = report.to_markdown().replace("# Data contract", "Data contract", 1)
                parts += [f"## {heading}", "", body]
        return "\n".join(parts)


@dataclass(frozen=True)
class BatchOutcome:
    """What happened to one batch: the version it made, or where it was quarantined."""

    batch: str
    accepted: bool
    reason: str
    version: str | None = None
    quarantined_to: str | None = None
    report: str | None = None

    def line(self) -> str:
        if self.accepted:
            return f"{self.batch}: {ACCEPTED} as {self.version} ({self.reason})"
        return f"{self.batch}: {QUARANTINED} to {self.quarantined_to} ({self.reason})"


@dataclass(frozen=True)
class IngestResult:
    """One pass over the incoming folder: newest version before and after, each outcome."""

    before: str | None
    after: str | None
    outcomes: list[BatchOutcome] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.after != self.before

    def to_markdown(self) -> str:
        lines = [
            "# Incoming batches",
            "",
            f"newest data version: {self.before or 'none'} -> {self.after or 'none'}",
            "",
        ]
        lines += [f"- {o.line()}" for o in self.outcomes] or ["- nothing new"]
        return "\n".join(lines) + "\n"


def read_batch(batch: Batch, settings: Settings) -> Dataset:
    """The batch's images and labels, with the reader its form needs."""
    if batch.source == "npz":
        return load_npz(batch.path)
    if batch.source == "idx":
        return load_idx(batch.path)
    return load_folder(batch.path, settings.data.folder_resize)


def holdout_hashes(settings: Settings) -> set[str]:
    """Content hashes of the frozen holdout (empty until a first run froze it)."""
    store = HoldoutStore(settings.holdout_dir)
    return set(store.load().content_hashes()) if store.exists() else set()


def _keyed(frame: pd.DataFrame, leak_rows: np.ndarray, held: set[str]) -> pd.DataFrame:
    """The duplicate and leakage columns the contract reads (``profile_splits`` adds them for
    splits): duplicates within the table, and ``leak_rows`` that are holdout images."""
    keys = frame["split"] + ":" + frame["content_hash"]
    # Duplicates the data already held before this batch are not the batch's doing (the
    # contract judges them per split at training): only a duplicate involving a new row counts.
    new_hashes = set(frame.loc[leak_rows, "content_hash"])
    old_only = ~leak_rows & ~frame["content_hash"].isin(new_hashes)
    keys[old_only] = "held:" + frame.loc[old_only, "row"].astype(str)
    frame["split_content_hash"] = keys
    frame["holdout_leak"] = (leak_rows & frame["content_hash"].isin(held)).astype(np.int64)
    return frame


def check_batch(settings: Settings, current: Dataset, batch: Dataset, held: set[str]) -> BatchCheck:
    """The batch on its own (per-image rules), then merged into ``current`` (every rule)."""
    if not len(batch):
        return BatchCheck(False, "the batch holds no images")
    reference = load_reference(settings.reference_profile_path)
    own_frame = profile_dataset(batch, "batch")
    own_frame = _keyed(own_frame, np.ones(len(own_frame), bool), held)
    own = check_contract(own_frame, settings.data, reference, per_image=True)
    if not own.success:
        return BatchCheck(False, _reason(own, "on its own"), own, None, len(batch))
    try:
        merged_data = merge(current, [batch], "candidate")
    except DataSourceError as err:
        return BatchCheck(False, err.one_line(), own, None, len(batch))
    merged_frame = profile_dataset(merged_data, "merged")
    is_new = np.arange(len(merged_frame)) >= len(current)
    merged = check_contract(
        _keyed(merged_frame, is_new, held), settings.data, reference, per_image=False
    )
    if not merged.success:
        return BatchCheck(False, _reason(merged, "merged"), own, merged, len(batch))
    return BatchCheck(
        True, f"{len(batch)} images passed on their own and merged", own, merged, len(batch)
    )


def _reason(report: ValidationReport, where: str) -> str:
    failed = report.failures
    named = "; ".join(f"{o.description}: observed {o.observed}" for o in failed[:3])
    more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
    return f"contract failed {where}: {named}{more}"


@contextmanager
def ingest_lock(settings: Settings) -> Iterator[None]:
    """One ingest at a time across processes: a check and the version it makes see the same
    newest version."""
    assert settings.versions_dir is not None
    with exclusive_lock(settings.versions_dir / INGEST_LOCK):
        yield


def quarantine(settings: Settings, batch: Batch, check: BatchCheck) -> tuple[Path, Path]:
    """Move the batch to the quarantine folder and write its report beside it (JSON + MD);
    returns (where the batch went, the JSON report)."""
    assert settings.quarantine_dir is not None
    folder = settings.quarantine_dir
    folder.mkdir(parents=True, exist_ok=True)
    destination = folder / batch.path.name
    if destination.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        destination = folder / f"{batch.path.stem}-{stamp}{batch.path.suffix}"
    shutil.move(batch.path, destination)
    report = {
        "batch": batch.path.name,
        "source": batch.source,
        "fingerprint": batch.fingerprint,
        "quarantined_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "moved_to": str(destination),
        **check.to_dict(),
    }
    json_path = destination.with_name(destination.name + ".report.json")
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    title = f"Batch {batch.path.name} quarantined"
    destination.with_name(destination.name + ".report.md").write_text(check.to_markdown(title))
    return destination, json_path


def ingest_batch(settings: Settings, base: Dataset, batch: Batch) -> BatchOutcome:
    """Check one (claimed) batch against the newest version of ``base``: a new version, or
    quarantine. Idempotent: a batch a version already holds is reported, not added again."""
    store = VersionStore.of(settings)
    name = batch.path.name
    with ingest_lock(settings):
        done = store.find_batch(base.digest, name, batch.fingerprint)
        if done is not None:
            return BatchOutcome(name, True, "already in this version", done.id)
        current = newest(settings, base)
        assert current is not None
        try:
            data = read_batch(batch, settings)
        except DataSourceError as err:
            check = BatchCheck(False, f"unreadable: {err.one_line()}")
        else:
            check = check_batch(settings, current.dataset, data, holdout_hashes(settings))
        if not check.passed:
            moved, report = quarantine(settings, batch, check)
            return BatchOutcome(name, False, check.reason, None, str(moved), str(report))
        stored = Dataset(data.pixels(), data.labels.astype(np.int64), data.origin)
        merged = merge(current.dataset, [stored], "candidate")
        ref = BatchRef(name, batch.fingerprint, len(stored))
        version = store.add(current.version, merged, stored, ref)
    return BatchOutcome(name, True, f"{len(stored)} image(s)", version.id)


def ingest_pending(
    settings: Settings, stale_after: timedelta = CLAIM_TIMEOUT, run: str = ""
) -> IngestResult:
    """Every new batch of ``settings.incoming_dir``: claim -> accept or quarantine -> ledger.

    Batches extend the configured source (``settings.data``). ``run`` names the caller in the
    ledger (a flow run), for people.
    """
    assert settings.incoming_dir is not None
    folder = settings.incoming_dir
    pending = new_batches(folder, stale_after)
    if not pending:
        return IngestResult(None, None)
    base = load(settings.data)
    store = VersionStore.of(settings)
    current = newest(settings, base)  # records the base's root version on first use
    assert current is not None
    before = current.version.id
    outcomes = []
    for batch in pending:
        if not claim(folder, batch, stale_after=stale_after, run=run):
            continue  # another poller has it
        try:
            outcome = ingest_batch(settings, base, batch)
        except BaseException:  # stopped or crashed: the next poll takes it again
            release(folder, batch)
            raise
        if outcome.accepted:
            mark_seen(folder, batch, f"{ACCEPTED}: {outcome.version}")
        else:  # moved out of the folder: moving it back retries it
            release(folder, batch)
        outcomes.append(outcome)
    return IngestResult(before, store.latest_id(base.digest), outcomes)
