"""Versioned training data: a base source plus every accepted incoming batch, in order.

A data version is a manifest (JSON): a short sortable id (``dv0003``), the sha256 digest of its
content, per-class counts, the class names (label ``i`` is ``class_names[i]``), its parent, the batch that made it (name and fingerprint), when,
and the base it extends (source, path, base digest). Each base (by its digest) has its own
chain; the first use of a base records its root version (no batch), so every training run
names the exact data it saw, batches or not.

The digest identifies exactly the content (the base, then each batch in order). A root's is
the base's ``Dataset.digest``; a child's is ``chain_digest(parent digest, batch digest)``
(``digest_scheme: "chain"``), so adding a batch hashes the batch, not all the data before it.
Versions written before this scheme (``"concat"``) keep the ``Dataset.digest`` of their merged
content, and are still checked that way.

On disk, under ``settings.versions_dir``::

    manifests/dv0003.json    one per version
    stats/dv0003.json        its running profile statistics (``data.running``), for ingest
    batches/dv0003.npz       the batch that made dv0003, as uint8 pixels, until
    batches/pack-L0-...npz   compaction merges many of them into a pack (``data.batch_files``)
    index/<base>/            content hashes and batch keys of a base's versions (``version_index``)
    next-id                  the last id handed out
    latest.json              base digest -> newest version id (the pointer, written last)

Accepted batches are stored, not referenced, so a version can be rebuilt after the incoming
folder was cleaned. Every file is written to a temporary name and then ``os.replace``d, and
the pointer last: a process killed midway leaves at most an orphan file that no pointer
names, and the previous version stays the newest (no half-merge). Writers hold an exclusive
``flock`` on ``.lock``, so two ingesting processes allocate distinct ids and never lose a
pointer update.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from clearsight.config import DataSettings, Settings
from clearsight.data.batch_files import BatchFiles, Compaction
from clearsight.data.dataset import Dataset, concat
from clearsight.data.version_index import VersionIndex, version_number
from clearsight.errors import DataSourceError
from clearsight.files import atomic_write, exclusive_lock
from clearsight.task import DIGITS

PREFIX = "dv"
LATEST = "latest.json"
LOCK = ".lock"
NEXT_ID = "next-id"
CHAIN = "chain"  # digest = chain_digest(parent's digest, the batch's digest)
CONCAT = "concat"  # digest = Dataset.digest of the merged content (versions made before chain)


@dataclass(frozen=True)
class BatchRef:
    """The incoming batch a version added: its name, fingerprint and size."""

    name: str
    fingerprint: str
    n_images: int


@dataclass(frozen=True)
class BaseRef:
    """The configured source a chain of versions extends."""

    source: str
    path: str | None
    digest: str
    n_images: int


@dataclass(frozen=True)
class DataVersion:
    """One version of the training data (the manifest), as plain values."""

    id: str
    digest: str
    n_images: int
    class_counts: dict[str, int]
    parent: str | None
    batch: BatchRef | None
    base: BaseRef
    created_at: str
    batch_ids: tuple[str, ...] = field(default=())  # versions whose batches it holds, in order
    digest_scheme: str = CONCAT  # how ``digest`` was computed (module docstring)
    class_names: tuple[str, ...] | None = None  # None: the digits' (versions made before names)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["batch_ids"] = list(self.batch_ids)
        data["class_names"] = list(self.class_names) if self.class_names else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataVersion:
        batch = data.get("batch")
        return cls(
            id=data["id"],
            digest=data["digest"],
            n_images=int(data["n_images"]),
            class_counts={str(k): int(v) for k, v in data["class_counts"].items()},
            parent=data.get("parent"),
            batch=BatchRef(**batch) if batch else None,
            base=BaseRef(**data["base"]),
            created_at=data["created_at"],
            batch_ids=tuple(data.get("batch_ids", ())),
            digest_scheme=data.get("digest_scheme", CONCAT),
            class_names=tuple(names) if (names := data.get("class_names")) else None,
        )

    def per_class(self) -> list[tuple[str, int]]:
        """(class name, image count) for every class of the task, in label order.

        A class with no image yet still shows (a zero is what a reviewer must see); versions
        made before class names were recorded are the digits'.
        """
        names = self.class_names or DIGITS.class_names
        return [(name, self.class_counts.get(str(i), 0)) for i, name in enumerate(names)]

    def describe(self) -> str:
        """One line for logs and summaries."""
        what = f"+ {self.batch.name} ({self.batch.n_images} images)" if self.batch else "base"
        return f"{self.id} ({self.n_images} images, {what}, sha256 {self.digest[:12]})"


def class_counts(labels: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(labels.astype(np.int64), return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}


def chain_digest(parent_digest: str, batch: Dataset) -> str:
    """The digest of a version = its parent's content followed by ``batch``: sha256 over the
    parent's digest and the batch's ``Dataset.digest`` (both identify their content)."""
    text = f"clearsight data version|{parent_digest}|{batch.digest}"
    return hashlib.sha256(text.encode()).hexdigest()


def fold_digest(base_digest: str, batches: list[Dataset]) -> str:
    """``chain_digest`` over every batch in order, starting from the base's digest."""
    digest = base_digest
    for batch in batches:
        digest = chain_digest(digest, batch)
    return digest


def base_ref(settings: DataSettings, base: Dataset) -> BaseRef:
    path = str(settings.path) if settings.path is not None else None
    return BaseRef(settings.source, path, base.digest, len(base))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda h: h.write((json.dumps(data, indent=2) + "\n").encode()), ".json")


class VersionStore:
    """The versions of every base, on disk (see the module docstring for the layout)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.manifests = folder / "manifests"
        self.batches = folder / "batches"
        self.stats_dir = folder / "stats"
        self.pointer = folder / LATEST
        self.files = BatchFiles(self.batches)

    @classmethod
    def of(cls, settings: Settings) -> VersionStore:
        assert settings.versions_dir is not None
        return cls(settings.versions_dir)

    # -- reading ----------------------------------------------------------------------------
    def pointers(self) -> dict[str, str]:
        return json.loads(self.pointer.read_text()) if self.pointer.is_file() else {}

    def latest_id(self, base_digest: str) -> str | None:
        return self.pointers().get(base_digest)

    def manifest(self, version_id: str) -> DataVersion:
        path = self.manifests / f"{version_id}.json"
        try:
            return DataVersion.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise DataSourceError(f"{path}: no such data version") from None
        except (ValueError, KeyError, TypeError) as err:
            raise DataSourceError(f"{path}: unreadable data version manifest ({err})") from None

    def chain(self, version_id: str) -> list[DataVersion]:
        """The version and its ancestors, root first."""
        chain = [self.manifest(version_id)]
        while chain[-1].parent is not None:
            chain.append(self.manifest(chain[-1].parent))
        return chain[::-1]

    def versions(self) -> list[DataVersion]:
        """Every version some base's pointer leads to (orphans of a crash left out), by id."""
        seen: dict[str, DataVersion] = {}
        for head in self.pointers().values():
            for version in self.chain(head):
                seen[version.id] = version
        return [seen[k] for k in sorted(seen)]

    def batch(self, version_id: str) -> Dataset:
        """The batch that made this version (from its own file or a pack)."""
        return self.files.load([version_id])[0]

    def dataset(self, version: DataVersion, base: Dataset) -> Dataset:
        """The version's content rebuilt from its base and stored batches, digest checked."""
        if base.digest != version.base.digest:
            raise DataSourceError(
                f"data version {version.id} extends a base with digest "
                f"{version.base.digest[:12]}, but the source has {base.digest[:12]}"
            )
        batches = self.files.load(list(version.batch_ids))
        merged = merge(base, batches, version.id)
        digest = (
            fold_digest(base.digest, batches) if version.digest_scheme == CHAIN else merged.digest
        )
        if digest != version.digest:
            raise DataSourceError(
                f"data version {version.id}: rebuilt content has digest {digest[:12]}, "
                f"the manifest says {version.digest[:12]}; its stored batches were modified"
            )
        return merged

    def index(self, base_digest: str) -> VersionIndex:
        return VersionIndex(self.folder, base_digest)

    def ensure_index(self, head: DataVersion, base: Dataset) -> VersionIndex:
        """The base's index, built on first use from the base and ``head``'s batches (once:
        later versions append to it)."""
        index = self.index(base.digest)
        if not index.built:
            rows = [(base.content_hashes(), 0)]
            for version_id, batch in zip(
                head.batch_ids, self.files.load(list(head.batch_ids)), strict=True
            ):
                rows.append((batch.content_hashes(), version_number(version_id)))
            index.build(rows)
            for version in self.chain(head.id):  # migrating a store made before the index
                if version.batch:
                    index.record_batch(version.batch.name, version.batch.fingerprint, version.id)
        return index

    def stats(self, version_id: str) -> dict[str, Any] | None:
        """The version's running profile statistics (``data.running``), when recorded."""
        path = self.stats_dir / f"{version_id}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def write_stats(self, version_id: str, stats: dict[str, Any]) -> None:
        _write_json(self.stats_dir / f"{version_id}.json", stats)

    def find_batch(self, base_digest: str, name: str, fingerprint: str) -> DataVersion | None:
        """The version that already added this batch (a retried ingest must not add it twice):
        one index lookup, or a walk of the chain before the base's index exists."""
        head = self.latest_id(base_digest)
        if head is None:
            return None
        index = self.index(base_digest)
        if index.built:
            found = index.batch_version(name, fingerprint)
            if found is None or found not in self.manifest(head).batch_ids:
                return None  # never added, or by an orphan
            return self.manifest(found)
        for version in self.chain(head):
            if version.batch and (version.batch.name, version.batch.fingerprint) == (
                name,
                fingerprint,
            ):
                return version
        return None

    # -- writing ----------------------------------------------------------------------------
    def lock(self) -> AbstractContextManager[None]:
        return exclusive_lock(self.folder / LOCK)

    def _next_id(self) -> str:
        """One past the last id handed out (``next-id``, written before the id is used), or,
        in a store made before that file, past every id on disk: an id is never reused, not
        even an orphan's."""
        counter = self.folder / NEXT_ID
        if counter.is_file():
            last = int(counter.read_text())
        else:
            last = max(
                (
                    int(p.stem[len(PREFIX) :])
                    for folder in (self.manifests, self.batches)
                    if folder.is_dir()
                    for p in folder.iterdir()
                    if p.stem.startswith(PREFIX) and p.stem[len(PREFIX) :].isdigit()
                ),
                default=0,
            )
        atomic_write(counter, lambda h: h.write(f"{last + 1}\n".encode()))
        return f"{PREFIX}{last + 1:04d}"

    def _write_batch(self, version_id: str, batch: Dataset) -> None:
        self.files.write(version_id, batch)

    def _write_manifest(self, version: DataVersion) -> None:
        _write_json(self.manifests / f"{version.id}.json", version.to_dict())

    def _point(self, base_digest: str, version_id: str) -> None:
        _write_json(self.pointer, self.pointers() | {base_digest: version_id})

    def root(self, settings: DataSettings, base: Dataset) -> DataVersion:
        """The base's newest version; records the root version on the base's first use."""
        with self.lock():
            head = self.latest_id(base.digest)
            if head is not None:
                return self.manifest(head)
            version = DataVersion(
                id=self._next_id(),
                digest=base.digest,
                n_images=len(base),
                class_counts=class_counts(base.labels),
                parent=None,
                batch=None,
                base=base_ref(settings, base),
                created_at=_now(),
                digest_scheme=CHAIN,
                class_names=base.class_names,
            )
            self._write_manifest(version)
            self._point(base.digest, version.id)
            return version

    def _chain_digest_of(self, version: DataVersion) -> str:
        """The version's digest in the chain scheme (a ``concat`` version's is computed from
        its batches, once: its child is then a ``chain`` version)."""
        if version.digest_scheme == CHAIN or not version.batch_ids:
            return version.digest
        return fold_digest(version.base.digest, self.files.load(list(version.batch_ids)))

    def add(
        self,
        parent: DataVersion,
        batch: Dataset,
        ref: BatchRef,
        hashes: list[str] | None = None,
        stats: dict[str, Any] | None = None,
    ) -> DataVersion:
        """Record ``parent``'s content + ``batch`` (28x28 uint8 pixels) as the newest version.

        Costs O(batch): the digest chains the parent's, counts add up, ``hashes`` (the
        batch's content hashes) go to the base's index when it exists and ``stats`` (its
        running profile) beside the manifest. Arrays, index, statistics, then manifest, then
        the pointer: a crash before the pointer moved leaves ``parent`` the newest. Refused
        when another process added a version meanwhile (the content would miss its batch).
        """
        with self.lock():
            if self.latest_id(parent.base.digest) != parent.id:
                raise DataSourceError(
                    f"data version {parent.id} is no longer the newest; ingest again"
                )
            version_id = self._next_id()
            counts = dict(parent.class_counts)
            for label, n in class_counts(batch.labels).items():
                counts[label] = counts.get(label, 0) + n
            version = DataVersion(
                id=version_id,
                digest=chain_digest(self._chain_digest_of(parent), batch),
                n_images=parent.n_images + len(batch),
                class_counts=dict(sorted(counts.items(), key=lambda kv: int(kv[0]))),
                parent=parent.id,
                batch=ref,
                base=parent.base,
                created_at=_now(),
                batch_ids=(*parent.batch_ids, version_id),
                digest_scheme=CHAIN,
                class_names=parent.class_names,
            )
            self._write_batch(version_id, batch)
            index = self.index(parent.base.digest)
            if index.built:
                index.add(
                    batch.content_hashes() if hashes is None else hashes, version_number(version_id)
                )
                index.record_batch(ref.name, ref.fingerprint, version_id)
            if stats is not None:
                self.write_stats(version_id, stats)
            self._write_manifest(version)
            self._point(parent.base.digest, version_id)
            return version

    def compact(self, head: DataVersion, every: int) -> Compaction | None:
        """Merge ``head``'s small batch files into packs when ``every`` have accumulated."""
        with self.lock():
            return self.files.compact(list(head.batch_ids), every)


def merge(base: Dataset, batches: list[Dataset], version_id: str) -> Dataset:
    """Base then batches, in order (the order the versions added them). Stored batches carry
    labels in the base's class order, so they take the base's class names."""
    if not batches:
        return base
    named = [Dataset(b.images, b.labels, b.origin, base.class_names) for b in batches]
    return concat([base, *named], f"{base.origin} + {len(batches)} batches ({version_id})")


@dataclass(frozen=True)
class VersionedData:
    """The newest data version of a base and its content."""

    version: DataVersion
    dataset: Dataset


def newest(settings: Settings, base: Dataset, *, record: bool = True) -> VersionedData | None:
    """The newest version of ``base`` (the configured ``settings.data`` source) and its data.

    ``record``: write the root version when this base has none yet (training does; a dry
    validation of a candidate source does not, and gets None then).
    """
    store = VersionStore.of(settings)
    head = store.latest_id(base.digest)
    if head is None and not record:
        return None
    version = store.manifest(head) if head else store.root(settings.data, base)
    dataset = store.dataset(version, base)
    origin = f"{base.origin} @ {version.id}" if version.batch_ids else base.origin
    named = Dataset(dataset.images, dataset.labels, origin, dataset.class_names)
    return VersionedData(version, named)
