"""The class-folder writer and the synthetic colour set the own-images tests build on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clearsight.data.class_folders import (
    DIGIT_WORDS,
    SHAPES,
    colour_shapes,
    write_class_folders,
)
from clearsight.data.dataset import Dataset
from clearsight.errors import DataSourceError


def test_writes_one_folder_per_class_named_as_asked(
    tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = digits
    counts = write_class_folders(Dataset(images, labels, "test"), tmp_path / "tree", DIGIT_WORDS)
    assert counts == {word: 40 for word in DIGIT_WORDS}
    assert sorted(p.name for p in (tmp_path / "tree").iterdir()) == sorted(DIGIT_WORDS)
    first = sorted((tmp_path / "tree" / "seven").iterdir())[0]
    index = int(first.stem)
    assert labels[index] == 7
    np.testing.assert_array_equal(np.asarray(Image.open(first)), images[index])


def test_resizes_and_refuses_a_folder_with_files(
    tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = digits
    write_class_folders(Dataset(images[:20], labels[:20], "test"), tmp_path / "small", size=8)
    picture = Image.open(next((tmp_path / "small").rglob("*.png")))
    assert picture.size == (8, 8)
    with pytest.raises(DataSourceError, match="not empty"):
        write_class_folders(Dataset(images[:2], labels[:2], "test"), tmp_path / "small")


def test_colour_shapes_are_colour_and_colour_does_not_give_the_class_away() -> None:
    data = colour_shapes(60, size=32, seed=3)
    assert data.images.shape == (180, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.class_names == SHAPES
    assert np.bincount(data.labels).tolist() == [60, 60, 60]
    # The mean colour per class is about the same: only the shape tells the classes apart.
    means = np.stack([data.images[data.labels == c].mean(axis=(0, 1, 2)) for c in range(3)])
    assert np.ptp(means, axis=0).max() < 40
    assert data.task(digit_like=False).describe() == "32x32 colour, 3 classes"
