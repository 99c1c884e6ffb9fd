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
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from clearsight.config import Settings
from clearsight.data import label_check
from clearsight.data.contract import expectation_specs, reference_for
from clearsight.data.dataset import Dataset
from clearsight.data.folder import Target, load_class_folders
from clearsight.data.incoming import (
    CLAIM_TIMEOUT,
    Batch,
    claim,
    mark_seen,
    new_batches,
    release,
)
from clearsight.data.ingest_checks import BatchCheck, Candidate, batch_frame, run_checks
from clearsight.data.profile import profile_dataset
from clearsight.data.running import RunningProfile, signature
from clearsight.data.sources import digit_rules_on, expected_task, load, load_idx, load_npz
from clearsight.data.splits import HoldoutStore
from clearsight.data.versions import BatchRef, DataVersion, VersionStore
from clearsight.errors import DataSourceError
from clearsight.files import exclusive_lock

logger = logging.getLogger(__name__)

INGEST_LOCK = ".ingest.lock"
ACCEPTED = "accepted"
QUARANTINED = "quarantined"


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


def read_batch(batch: Batch, settings: Settings, base: Dataset | None = None) -> Dataset:
    """The batch's images and labels, with the reader its form needs.

    A class-folder batch is read as the dataset it joins: its folders must be among the
    base's classes (labels follow the base's order) and its images are brought to the base's
    shape; digit data the MNIST way (``folder_resize``), as the digit folders always were.
    """
    if batch.source == "npz":
        return load_npz(batch.path)
    if batch.source == "idx":
        return load_idx(batch.path)
    reference = base if base is not None else load(settings.data)
    task = expected_task(settings.data, reference)
    digit_rules = digit_rules_on(settings.data)
    target = None if digit_rules else Target(task.height, task.width, task.channels)
    data = load_class_folders(
        batch.path, settings.data, digit_rules=digit_rules, class_names=task.class_names,
        target=target,
    )  # fmt: skip
    return Dataset(data.images, data.labels, data.origin, reference.class_names)


def holdout_hashes(settings: Settings) -> set[str]:
    """Content hashes of the frozen holdout (empty until a first run froze it)."""
    assert settings.holdout_dir is not None
    store = HoldoutStore(settings.holdout_dir)
    return set(store.load().content_hashes()) if store.exists() else set()


def running_profile(
    store: VersionStore, version: DataVersion, base: Dataset, specs: list[dict[str, Any]]
) -> RunningProfile:
    """The version's running statistics: as recorded when it was made, or (a store from
    before them, or a reference profile that changed the rules' bounds) recomputed from its
    whole content once and recorded."""
    saved = store.stats(version.id)
    if saved is not None and saved.get("signature") == signature(specs):
        return RunningProfile.from_dict(saved)
    frame = profile_dataset(store.dataset(version, base), "merged")
    stats = RunningProfile.of(frame, specs)
    store.write_stats(version.id, stats.to_dict())
    return stats


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


def ingest_batch(
    settings: Settings, base: Dataset, batch: Batch, held: set[str] | None = None
) -> BatchOutcome:
    """Check one (claimed) batch against the newest version of ``base``: a new version, or
    quarantine. Idempotent: a batch a version already holds is reported, not added again.

    O(batch): the newest version's manifest, running statistics and the index shards of the
    batch's images are read, never the version's data (``held``: the holdout's hashes, when
    the caller already has them).
    """
    store = VersionStore.of(settings)
    name = batch.path.name
    with ingest_lock(settings):
        done = store.find_batch(base.digest, name, batch.fingerprint)
        if done is not None:
            return BatchOutcome(name, True, "already in this version", done.id)
        head = store.root(settings.data, base)  # the newest version (the root on first use)
        index = store.ensure_index(head, base)
        task = expected_task(settings.data, base)
        reference = reference_for(settings, task)
        specs = expectation_specs(settings.data, reference, task=task)
        held = holdout_hashes(settings) if held is None else held
        labels = None
        try:
            data = read_batch(batch, settings, base)
        except DataSourceError as err:
            check = BatchCheck(False, f"unreadable: {err.one_line()}")
        else:
            before = running_profile(store, head, base, specs)
            candidate = Candidate(
                settings, data, batch_frame(data, held), head, before, specs, reference, index,
                held, task,
            )  # fmt: skip
            check = run_checks(candidate)
            check, labels = label_check.gate(settings, batch.path, data.labels, check)
        if not check.passed:
            moved, report = quarantine(settings, batch, check)
            if labels is not None:  # the PNG grid of contradicted labels, for a person
                label_check.write_report(moved, report, data.pixels(), labels)
            return BatchOutcome(name, False, check.reason, None, str(moved), str(report))
        stored = Dataset(data.pixels(), data.labels.astype(np.int64), data.origin)
        same = data.images.dtype == np.uint8 and np.array_equal(data.images, stored.images)
        frame = candidate.frame if same else batch_frame(stored, held)
        stats = before.add(frame, specs)
        ref = BatchRef(name, batch.fingerprint, len(stored))
        hashes = list(frame["content_hash"])
        version = store.add(head, stored, ref, hashes, stats.to_dict())
        _compact(store, version, settings.data.compact_every)
    return BatchOutcome(name, True, f"{len(stored)} image(s)", version.id)


def _compact(store: VersionStore, version: DataVersion, every: int) -> None:
    """Compaction is upkeep: when it fails (a full disk), the version it follows stands and
    the next ingest tries again."""
    try:
        done = store.compact(version, every)
    except (OSError, DataSourceError) as err:
        logger.warning("compacting the batch files of %s failed: %s", version.id, err)
        return
    if done is not None and done.written:
        logger.info("compacted %d batch files into %s", len(done.removed), done.written)


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
    before = store.root(settings.data, base).id  # records the base's root on first use
    held = holdout_hashes(settings)
    outcomes = []
    for batch in pending:
        if not claim(folder, batch, stale_after=stale_after, run=run):
            continue  # another poller has it
        try:
            outcome = ingest_batch(settings, base, batch, held)
        except BaseException:  # stopped or crashed: the next poll takes it again
            release(folder, batch)
            raise
        if outcome.accepted:
            mark_seen(folder, batch, f"{ACCEPTED}: {outcome.version}")
        else:  # moved out of the folder: moving it back retries it
            release(folder, batch)
        outcomes.append(outcome)
    return IngestResult(before, store.latest_id(base.digest), outcomes)
