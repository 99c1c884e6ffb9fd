"""Per-base lookups that let ingest stay O(batch): image content hashes and batch keys.

The duplicate check needs "is this image already in the training data?" and the retry check
"did a version already add this batch?". Answering either by reading the whole data version
or walking its chain made each batch cost as much as all before it. Instead, per base
(``index/<base digest[:16]>/`` under the versions folder):

- ``hashes/xx.npy``: 256 shards by the first byte of the image's content hash, each row
  (sha256, the version that added it: 0 for the base). A lookup reads the shards of the new
  images only (1/256 of the rows each); an append rewrites those shards atomically.
- ``batches/<sha256 of name and fingerprint>``: the version that added that batch.
- ``meta.json``: written last when the index was built, so a build killed midway is redone.

Entries are tagged with the version that wrote them, and a lookup counts only the versions in
the asking version's ``batch_ids``: a version killed before its pointer moved (an orphan)
may leave entries, and they never count.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from clearsight.files import atomic_write

ENTRY = np.dtype([("hash", "S32"), ("version", "<i8")])
BASE = 0  # the version number base rows are tagged with
META = "meta.json"


def version_number(version_id: str) -> int:
    """``dv0042`` -> 42 (the numeric part of a version id)."""
    return int(version_id.lstrip("abcdefghijklmnopqrstuvwxyz"))


def members(batch_ids: Iterable[str]) -> set[int]:
    """The version numbers whose rows a version holds: the base and its batches."""
    return {BASE, *(version_number(v) for v in batch_ids)}


def _shard(content_hash: str) -> str:
    return content_hash[:2]


def _batch_key(name: str, fingerprint: str) -> str:
    return hashlib.sha256(f"{name}\0{fingerprint}".encode()).hexdigest()[:32]


class VersionIndex:
    """The content-hash and batch-key index of one base's versions."""

    def __init__(self, versions_dir: Path, base_digest: str) -> None:
        self.folder = versions_dir / "index" / base_digest[:16]
        self.hashes = self.folder / "hashes"
        self.batches = self.folder / "batches"

    @property
    def built(self) -> bool:
        return (self.folder / META).is_file()

    def build(self, rows: Iterable[tuple[list[str], int]]) -> None:
        """Write the whole index from (content hashes, version number) groups, then the
        marker. Used once per base (and to migrate a store written before the index)."""
        grouped: dict[str, list[tuple[bytes, int]]] = defaultdict(list)
        for hashes, number in rows:
            for h in hashes:
                grouped[_shard(h)].append((bytes.fromhex(h), number))
        for shard in (f"{i:02x}" for i in range(256)):
            self._write_shard(shard, np.array(grouped.get(shard, []), dtype=ENTRY))
        atomic_write(self.folder / META, lambda h: h.write(b'{"version": 1}\n'), ".json")

    def _read_shard(self, shard: str) -> np.ndarray:
        path = self.hashes / f"{shard}.npy"
        return np.load(path, allow_pickle=False) if path.is_file() else np.zeros(0, ENTRY)

    def _write_shard(self, shard: str, entries: np.ndarray) -> None:
        atomic_write(self.hashes / f"{shard}.npy", lambda h: np.save(h, entries), ".npy")

    def add(self, hashes: list[str], number: int) -> None:
        """Record a new version's rows (each touched shard rewritten atomically)."""
        grouped: dict[str, list[tuple[bytes, int]]] = defaultdict(list)
        for h in hashes:
            grouped[_shard(h)].append((bytes.fromhex(h), number))
        for shard, new in grouped.items():
            entries = self._read_shard(shard)
            kept = entries[entries["version"] != number]  # a retried write replaces its own
            self._write_shard(shard, np.concatenate([kept, np.array(new, dtype=ENTRY)]))

    def counts(self, hashes: Iterable[str], holders: set[int]) -> dict[str, int]:
        """How many rows of the version made of ``holders`` have each of these hashes."""
        wanted: dict[str, set[str]] = defaultdict(set)
        for h in set(hashes):
            wanted[_shard(h)].add(h)
        found: dict[str, int] = {}
        numbers = np.fromiter(holders, np.int64)
        for shard, keys in wanted.items():
            entries = self._read_shard(shard)
            held = entries["hash"][np.isin(entries["version"], numbers)]
            for key in keys:  # numpy drops trailing NUL bytes on both sides alike
                if n := int((held == bytes.fromhex(key)).sum()):
                    found[key] = n
        return found

    def record_batch(self, name: str, fingerprint: str, version_id: str) -> None:
        path = self.batches / _batch_key(name, fingerprint)
        atomic_write(path, lambda h: h.write(json.dumps({"version": version_id}).encode()))

    def batch_version(self, name: str, fingerprint: str) -> str | None:
        """The version recorded for this batch (it may be an orphan: check membership)."""
        path = self.batches / _batch_key(name, fingerprint)
        return json.loads(path.read_text())["version"] if path.is_file() else None
