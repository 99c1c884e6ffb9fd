"""The stored arrays of accepted batches: one file per batch, compacted into packs.

Each accepted batch is written as ``batches/dv0042.npz`` (28x28 uint8 images, int64 labels).
Thousands of small feedback batches would make loading a data version open thousands of
files, so every ``compact_every`` loose batches of a chain are merged into one pack,
``batches/pack-L0-dv0002-dv0051.npz`` (the batches' arrays one after another, with their
version ids and row ends), and every ``compact_every`` packs of one level into one pack of the
next level (size-tiered: each row is rewritten once per level, O(log n) times in all).

A compaction writes its pack atomically (``files.atomic_write``) and only then deletes the
files it replaces. Killed before the rename, it leaves the old files as they were (and at
most a dot-named temporary file, ignored); killed after, a batch is in two files with equal
content, readers take the pack, and the next compaction deletes the leftovers. A reader that
listed a file a concurrent compaction then deleted lists again (``load`` retries).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clearsight.data.dataset import Dataset
from clearsight.errors import DataSourceError
from clearsight.files import atomic_write

PACK = re.compile(r"^pack-L(\d+)-([a-z]+\d+)-([a-z]+\d+)\.npz$")
RETRIES = 3


@dataclass(frozen=True)
class Pack:
    """One pack file: its level and the first and last version id it holds."""

    path: Path
    level: int
    first: str
    last: str


@dataclass(frozen=True)
class Compaction:
    """What one compaction wrote and removed."""

    written: list[str]
    removed: list[str]


class BatchFiles:
    """Loose batch files and packs in one folder (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _listing(self) -> tuple[set[str], list[Pack]]:
        """(loose version ids, packs highest level first), dot-named temporaries ignored."""
        names = os.listdir(self.folder) if self.folder.is_dir() else []
        loose = {n[:-4] for n in names if n.endswith(".npz") and not n.startswith((".", "pack"))}
        packs = [
            Pack(self.folder / n, int(m[1]), m[2], m[3]) for n in names if (m := PACK.match(n))
        ]
        return loose, sorted(packs, key=lambda p: (-p.level, p.first))

    # -- writing -----------------------------------------------------------------------------
    def write(self, version_id: str, batch: Dataset) -> None:
        pixels, labels = batch.pixels(), batch.labels.astype(np.int64)
        atomic_write(
            self.folder / f"{version_id}.npz",
            lambda h: np.savez_compressed(h, images=pixels, labels=labels),
            ".npz",
        )

    # -- reading -----------------------------------------------------------------------------
    def load(self, ids: list[str]) -> list[Dataset]:
        """The batches of these versions, in this order, from packs or loose files."""
        for attempt in range(RETRIES):
            try:
                return self._load(ids)
            except FileNotFoundError:  # a compaction replaced a file we listed
                if attempt == RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _load(self, ids: list[str]) -> list[Dataset]:
        wanted, found = set(ids), dict[str, Dataset]()
        loose, packs = self._listing()
        for pack in packs:
            if pack.first in wanted and pack.first not in found:  # not inside a bigger pack
                found |= {k: v for k, v in _read_pack(pack.path).items() if k in wanted}
        for version_id in wanted - found.keys():
            if version_id not in loose:
                raise DataSourceError(
                    f"{self.folder}: no stored batch for data version {version_id}"
                )
            found[version_id] = _read_loose(self.folder / f"{version_id}.npz", version_id)
        return [found[v] for v in ids]

    # -- compacting --------------------------------------------------------------------------
    def compact(self, chain: list[str], every: int) -> Compaction | None:
        """Merge this chain's loose batches into a pack once ``every`` have accumulated, and
        ``every`` packs of a level into one of the next; None when nothing was due.

        ``chain``: the newest version's ``batch_ids`` (in order); files of other chains and
        orphans are left alone.
        """
        if every < 2:
            return None
        members = set(chain)
        loose, packs = self._listing()
        if sum(v in members for v in loose) < every:
            return None
        order = {v: i for i, v in enumerate(chain)}
        packs = [p for p in packs if p.first in members]
        written, removed = [], []
        covered: set[str] = set()
        for pack in packs:  # highest level first: a pack inside a bigger one is a leftover
            in_pack = set(_pack_ids(pack.path))
            if in_pack <= covered:
                removed.append(_remove(pack.path))
            covered |= in_pack
        packs = [p for p in packs if p.path.name not in removed]
        for version_id in sorted(loose & covered, key=order.__getitem__):
            removed.append(_remove(self.folder / f"{version_id}.npz"))
        todo = sorted((loose & members) - covered, key=order.__getitem__)
        if len(todo) >= every:
            parts = [_read_loose(self.folder / f"{v}.npz", v) for v in todo]
            written.append(self._write_pack(0, todo, parts).name)
            removed += [_remove(self.folder / f"{v}.npz") for v in todo]
            packs.append(self._pack_at(0, todo))
        level = 0
        while len(same := sorted((p for p in packs if p.level == level), key=_first)) >= every:
            merged = {k: v for p in same for k, v in _read_pack(p.path).items()}
            ids = sorted(merged, key=order.__getitem__)
            written.append(self._write_pack(level + 1, ids, [merged[v] for v in ids]).name)
            removed += [_remove(p.path) for p in same]
            packs = [p for p in packs if p not in same] + [self._pack_at(level + 1, ids)]
            level += 1
        return Compaction(written, removed)

    def _pack_at(self, level: int, ids: list[str]) -> Pack:
        return Pack(self.folder / _pack_name(level, ids), level, ids[0], ids[-1])

    def _write_pack(self, level: int, ids: list[str], parts: list[Dataset]) -> Path:
        images = np.concatenate([p.images for p in parts]).astype(np.uint8)
        labels = np.concatenate([p.labels for p in parts]).astype(np.int64)
        ends = np.cumsum([len(p) for p in parts]).astype(np.int64)
        arrays = {"ids": np.asarray(ids), "ends": ends, "images": images, "labels": labels}
        path = self.folder / _pack_name(level, ids)
        return atomic_write(path, lambda h: np.savez_compressed(h, **arrays), ".npz")  # type: ignore[arg-type]  # numpy's stub lets **arrays fill allow_pickle: bool


def _pack_name(level: int, ids: list[str]) -> str:
    return f"pack-L{level}-{ids[0]}-{ids[-1]}.npz"


def _first(pack: Pack) -> int:
    return int(pack.first.lstrip("abcdefghijklmnopqrstuvwxyz"))


def _remove(path: Path) -> str:
    path.unlink(missing_ok=True)
    return path.name


def _read_loose(path: Path, version_id: str) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return Dataset(npz["images"], npz["labels"], f"data version {version_id}: {path}")
    except FileNotFoundError:
        raise
    except (OSError, KeyError, ValueError) as err:
        raise DataSourceError(f"{path}: unreadable batch of a data version ({err})") from None


def _pack_ids(path: Path) -> list[str]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return [str(v) for v in npz["ids"]]
    except FileNotFoundError:
        raise
    except (OSError, KeyError, ValueError) as err:
        raise DataSourceError(f"{path}: unreadable pack of data versions ({err})") from None


def _read_pack(path: Path) -> dict[str, Dataset]:
    """Each version's batch in a pack, by version id."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            ids, ends = [str(v) for v in npz["ids"]], npz["ends"]
            images, labels = npz["images"], npz["labels"]
    except FileNotFoundError:
        raise
    except (OSError, KeyError, ValueError) as err:
        raise DataSourceError(f"{path}: unreadable pack of data versions ({err})") from None
    starts = np.concatenate([[0], ends[:-1]])
    return {
        v: Dataset(images[s:e], labels[s:e], f"data version {v}: {path}")
        for v, s, e in zip(ids, starts, ends, strict=True)
    }
