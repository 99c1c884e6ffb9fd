"""The value every data source returns."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from clearsight.errors import DataSourceError
from clearsight.task import DIGITS, ImageTask


@dataclass(frozen=True)
class Dataset:
    """Images with integer labels and a note of where they came from.

    ``images`` keep the dtype and range the source stored, (N, H, W) grey or (N, H, W, 3)
    colour: the data contract must see NaNs, out-of-range pixels and odd shapes before anything
    casts them away. After the contract passed, ``pixels()`` gives the uint8 array that training
    uses. ``class_names[i]`` names label ``i``; None means the digits' names ("0".."9").
    """

    images: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    origin: str
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        colour = self.images.ndim == 4 and self.images.shape[-1] == 3
        if self.images.ndim != 3 and not colour:
            raise DataSourceError(
                f"{self.origin}: expected images of shape (N, H, W) or (N, H, W, 3), "
                f"got {self.images.shape}"
            )
        if len(self.images) != len(self.labels):
            raise DataSourceError(
                f"{self.origin}: {len(self.images)} images but {len(self.labels)} labels"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray, origin: str | None = None) -> Dataset:
        """The rows at ``index``, in that order."""
        return Dataset(
            self.images[index], self.labels[index], origin or self.origin, self.class_names
        )

    def task(self, digit_like: bool) -> ImageTask:
        """The task these images pose: their stored shape and the class names."""
        height, width = self.images.shape[1:3]
        channels = 1 if self.images.ndim == 3 else self.images.shape[3]
        names = self.class_names or DIGITS.class_names
        return ImageTask(height, width, channels, tuple(names), digit_like)

    def pixels(self) -> np.ndarray:
        """uint8 pixels in the stored shape; only meaningful once the contract has passed."""
        pixels: np.ndarray = np.rint(np.clip(np.nan_to_num(self.images), 0, 255)).astype(np.uint8)
        return pixels

    @property
    def digest(self) -> str:
        """sha256 over shape, dtype, pixels and labels: equal content, equal digest."""
        h = hashlib.sha256()
        h.update(f"{self.images.shape}|{self.images.dtype.str}|".encode())
        h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(np.ascontiguousarray(self.labels.astype(np.int64)).tobytes())
        return h.hexdigest()

    def content_hashes(self) -> list[str]:
        """One sha256 per image over its values as float64.

        Hashing values rather than stored bytes makes a uint8 image and the same image stored
        as floats collide, which is what leakage and duplicate checks need.
        """
        values = np.ascontiguousarray(self.images, dtype=np.float64)
        return [hashlib.sha256(image.tobytes()).hexdigest() for image in values]


def concat(parts: list[Dataset], origin: str) -> Dataset:
    """Join datasets that share an image shape."""
    shapes = {p.images.shape[1:] for p in parts}
    if len(shapes) > 1:
        raise DataSourceError(f"{origin}: parts have different image shapes {sorted(shapes)}")
    names = {p.class_names for p in parts}
    if len(names) > 1:
        raise DataSourceError(f"{origin}: parts name their classes differently")
    images = np.concatenate([p.images for p in parts])
    labels = np.concatenate([p.labels for p in parts])
    return Dataset(images, labels, origin, parts[0].class_names)
