"""Write images out as a class-folder tree, the layout the folder source reads.

``clearsight data export`` uses it to show a new user the layout with data they already have
(the embedded digits, with folders named by words), and the tests use it to build data in the
shapes users bring: word-named classes, small images, colour images. It also makes a synthetic
colour set (shapes in random colours on random backgrounds), so the colour path is tested on
data no one tuned the model for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clearsight.data.dataset import Dataset
from clearsight.errors import DataSourceError

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SHAPES = ("circle", "square", "triangle")


def write_class_folders(
    dataset: Dataset,
    root: Path,
    class_names: Sequence[str] | None = None,
    size: int | None = None,
) -> dict[str, int]:
    """``root/<class name>/<index>.png`` for every image; returns the count per class.

    ``class_names[i]`` names label ``i`` (default: the dataset's own names); ``size`` resizes
    each image to ``size`` x ``size`` (e.g. 8 for a small-input set). Refuses a non-empty
    ``root`` so an export never mixes with older files.
    """
    from PIL import Image

    names = list(class_names or dataset.class_names or [str(c) for c in range(10)])
    if root.exists() and any(root.iterdir()):
        raise DataSourceError(f"{root}: not empty; export into a new folder")
    counts: dict[str, int] = {}
    pixels = dataset.pixels()
    for index, (image, label) in enumerate(zip(pixels, dataset.labels, strict=True)):
        name = names[int(label)]
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image)
        if size is not None:
            picture = picture.resize((size, size), Image.Resampling.LANCZOS)
        picture.save(folder / f"{index:05d}.png")
        counts[name] = counts.get(name, 0) + 1
    return counts


def colour_shapes(n_per_class: int, size: int = 32, seed: int = 0) -> Dataset:
    """Circles, squares and triangles of random size, place and colour on a random background.

    Foreground and background colours are drawn independently, so colour carries no class
    information: a model has to learn the shape.
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, shape in enumerate(SHAPES):
        for _ in range(n_per_class):
            background = tuple(int(v) for v in rng.integers(0, 256, 3))
            ink = tuple(int(v) for v in rng.integers(0, 256, 3))
            while sum(abs(a - b) for a, b in zip(ink, background, strict=True)) < 150:
                ink = tuple(int(v) for v in rng.integers(0, 256, 3))
            picture = Image.new("RGB", (size, size), background)
            draw = ImageDraw.Draw(picture)
            extent = int(rng.integers(size // 3, size * 3 // 4))
            left, top = (int(v) for v in rng.integers(1, size - extent, 2))
            box = (left, top, left + extent, top + extent)
            if shape == "circle":
                draw.ellipse(box, fill=ink)
            elif shape == "square":
                draw.rectangle(box, fill=ink)
            else:
                draw.polygon([(left, top + extent), (left + extent, top + extent),
                              (left + extent // 2, top)], fill=ink)  # fmt: skip
            images.append(np.asarray(picture))
            labels.append(label)
    order = rng.permutation(len(labels))
    return Dataset(
        np.stack(images)[order],
        np.asarray(labels, np.int64)[order],
        f"synthetic colour shapes ({size}x{size})",
        SHAPES,
    )
