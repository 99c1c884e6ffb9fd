"""Deterministic stratified splits and the frozen holdout.

The holdout is the yardstick champion and challenger are judged on, so it must not move
between retrains: the first validated run freezes it under ``data/holdout/`` and every later
run reuses it, dropping any source image whose content hash is in the holdout from the
training pool. It is written only after the data contract passed, atomically, so a bad source
never becomes the yardstick.

A holdout belongs to one dataset: ``holdout.json`` records its image shape and class names,
and a source of another shape or other classes is refused (one line naming both) rather than
judged on a yardstick it cannot be measured with. Each dataset gets its own home.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from clearsight.config import DataSettings
from clearsight.data.dataset import Dataset
from clearsight.errors import DataSourceError
from clearsight.task import DIGITS

SPLIT_NAMES = ("train", "validation", "holdout")


@dataclass(frozen=True)
class Splits:
    """Train and validation for fitting, and the holdout that never enters training."""

    train: Dataset
    validation: Dataset
    holdout: Dataset
    holdout_frozen: bool

    def items(self) -> list[tuple[str, Dataset]]:
        return [(name, getattr(self, name)) for name in SPLIT_NAMES]

    def digests(self) -> dict[str, str]:
        """sha256 of each split's content, for run tags and dataset inputs."""
        return {name: ds.digest for name, ds in self.items()}


def stratified_index(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices so each label keeps its share; returns (rest, taken).

    Written out rather than taken from scikit-learn because it must accept classes with a
    single member (corrupt data still has to reach the contract, which then names it).
    """
    taken = []
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        taken.append(rows[: round(len(rows) * fraction)])
    taken_idx = np.sort(np.concatenate(taken)) if taken else np.array([], int)
    rest_idx = np.setdiff1d(np.arange(len(labels)), taken_idx)
    return rest_idx, taken_idx


class HoldoutStore:
    """The frozen holdout on disk: ``holdout.npz`` plus ``holdout.json`` with its digest."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.arrays = folder / "holdout.npz"
        self.meta = folder / "holdout.json"

    def exists(self) -> bool:
        return self.arrays.is_file()

    def _meta(self) -> dict[str, object]:
        body: dict[str, object] = json.loads(self.meta.read_text()) if self.meta.exists() else {}
        return body

    def load(self) -> Dataset:
        meta = self._meta()
        names = meta.get("class_names")
        class_names = tuple(str(n) for n in names) if isinstance(names, list) else None
        try:
            with np.load(self.arrays, allow_pickle=False) as npz:
                holdout = Dataset(
                    npz["images"], npz["labels"], f"frozen holdout: {self.arrays}", class_names
                )
        except (OSError, KeyError, ValueError) as err:
            raise DataSourceError(f"{self.arrays}: unreadable frozen holdout ({err})") from None
        expected = meta.get("digest")
        if isinstance(expected, str) and expected != holdout.digest:
            raise DataSourceError(
                f"{self.arrays}: content digest {holdout.digest[:12]} does not match "
                f"holdout.json ({expected[:12]}); the frozen holdout was modified"
            )
        return holdout

    def freeze(self, holdout: Dataset) -> None:
        """Write the holdout once, atomically (temporary file, then rename)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.folder, suffix=".npz", delete=False) as tmp:
            np.savez_compressed(tmp, images=holdout.pixels(), labels=holdout.labels)
        frozen = Dataset(holdout.pixels(), holdout.labels, holdout.origin)
        meta = {
            "digest": frozen.digest,
            "n_images": len(frozen),
            "image_shape": list(frozen.images.shape[1:]),
            "class_names": list(holdout.class_names or DIGITS.class_names),
            "origin": holdout.origin,
            "frozen_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.replace(tmp.name, self.arrays)
        self.meta.write_text(json.dumps(meta, indent=2) + "\n")


def check_same_dataset(holdout: Dataset, dataset: Dataset, folder: Path) -> None:
    """Refuse ``dataset`` when the frozen ``holdout`` is another dataset's (shape or classes)."""
    held_names = holdout.class_names or DIGITS.class_names
    names = dataset.class_names or DIGITS.class_names
    held_shape, shape = holdout.images.shape[1:], dataset.images.shape[1:]
    if held_shape == shape and held_names == names:
        return
    raise DataSourceError(
        f"{folder}: the frozen holdout is another dataset's ({_shape_text(held_shape)}, "
        f"classes {_names_text(held_names)}; this source: {_shape_text(shape)}, classes "
        f"{_names_text(names)}); give this dataset its own home: set CLEARSIGHT_DATA_DIR "
        "(or CLEARSIGHT_HOLDOUT_DIR and CLEARSIGHT_VERSIONS_DIR) to a new folder"
    )


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) + (" grey" if len(shape) == 2 else "")


def _names_text(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    return f"{shown} ({len(names)})"


def make_splits(
    dataset: Dataset, settings: DataSettings, store: HoldoutStore | None = None
) -> Splits:
    """Cut train / validation / holdout; reuse the frozen holdout when the store has one."""
    # Separate streams, so train/validation are the same whether the holdout is cut or reused.
    holdout_rng, split_rng = (np.random.default_rng([settings.seed, i]) for i in (0, 1))
    if store is not None and store.exists():
        holdout = store.load()
        check_same_dataset(holdout, dataset, store.folder)
        holdout = Dataset(holdout.images, holdout.labels, holdout.origin, dataset.class_names)
        held = set(holdout.content_hashes())
        pool_idx = np.array(
            [i for i, h in enumerate(dataset.content_hashes()) if h not in held], dtype=int
        )
        frozen = True
    else:
        pool_idx, holdout_idx = stratified_index(
            dataset.labels, settings.holdout_fraction, holdout_rng
        )
        holdout = dataset.subset(holdout_idx, f"{dataset.origin} [holdout]")
        frozen = False
    pool = dataset.subset(pool_idx)
    train_idx, val_idx = stratified_index(pool.labels, settings.validation_fraction, split_rng)
    return Splits(
        train=pool.subset(train_idx, f"{dataset.origin} [train]"),
        validation=pool.subset(val_idx, f"{dataset.origin} [validation]"),
        holdout=holdout,
        holdout_frozen=frozen,
    )


def holdout_panel(holdout: Dataset, size: int) -> Dataset:
    """A small panel of the holdout that cycles through the classes: 0, 1, ..., 9, 0, ...

    Taken in order from the (frozen) holdout, so every run and every promotion explains the
    same digits and their pictures and numbers compare side by side in the MLflow UI.
    """
    labels = holdout.labels
    by_class = [list(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    panel: list[int] = []
    while len(panel) < min(size, len(labels)):
        for rows in by_class:
            if rows and len(panel) < size:
                panel.append(int(rows.pop(0)))
    return holdout.subset(np.asarray(panel, dtype=int), f"{holdout.origin} [panel]")
