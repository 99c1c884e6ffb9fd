"""The folder source: one subfolder per class, the layout Keras users already know.

``keras.utils.image_dataset_from_directory`` reads ``root/<class name>/*.png``; so does this.
Class names are the folder names, sorted (numerically when every name is an integer, so
``2`` comes before ``10``); label ``i`` is ``class_names[i]``. PNG, JPEG, BMP and TIFF files
are read, anywhere below a class folder; other files and dot-named ones are ignored.

Images may come in any size and mode. The target size and mode are the settings'
(``image_height``, ``image_width``, ``image_channels``), and where a setting is None the most
common value in the data: a folder of mostly 64x64 colour photos with a few odd ones becomes
64x64 colour, the odd ones resized (bilinear, aspect ignored) and converted. Only what cannot
be reconciled is refused: an unreadable file, 16-bit or float pixels (no agreed way to bring
them to 0-255), an empty class folder, a class with fewer than ``min_images_per_class``.
Every refusal is one ``DataSourceError`` line naming the file or folder.

Digit rules (``DataSettings.digit_rules``) keep the MNIST path: each image grey, brought to
28x28 by ``folder_resize`` (fit like MNIST, stretch, or reject = keep the size and let the
contract fail), exactly as the integer-named digit folders were always read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clearsight.config import DataSettings
from clearsight.data.dataset import Dataset
from clearsight.errors import DataSourceError
from clearsight.task import DIGITS, WIDE_MODES

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
# PIL modes read as grey; every other 8-bit mode (RGB, RGBA, P, CMYK, YCbCr, ...) is colour.
GREY_MODES = frozenset({"1", "L", "LA", "La"})


@dataclass(frozen=True)
class ImageFile:
    """One image file found under a class folder, with what its header says."""

    path: Path
    label: int
    size: tuple[int, int]  # (width, height), PIL's order
    mode: str

    @property
    def channels(self) -> int:
        return 1 if self.mode in GREY_MODES else 3


def sort_class_names(names: Sequence[str]) -> list[str]:
    """Folder names in label order: numeric when all are integers (2 before 10), else text."""
    if all(_is_int(name) for name in names):
        return sorted(names, key=int)
    return sorted(names)


def _is_int(name: str) -> bool:
    try:
        int(name)
    except ValueError:
        return False
    return True


def class_folders(root: Path) -> dict[str, Path]:
    """``root``'s class folders by name (dot-named folders left out); refuses a non-folder."""
    if not root.is_dir():
        raise DataSourceError(f"{root}: not a folder")
    found = {p.name: p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if not found:
        raise DataSourceError(
            f"{root}: empty folder; expected one subfolder per class, "
            "each holding .png/.jpg/.bmp/.tif images"
        )
    return found


def image_files(folder: Path) -> list[Path]:
    """The image files anywhere below ``folder``, in name order (dot names skipped)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def scan(
    root: Path, min_per_class: int, class_names: Sequence[str] | None = None
) -> tuple[list[str], list[ImageFile]]:
    """Class names and every image file with its size and mode (headers only, not pixels).

    ``class_names`` (a batch joining a dataset): the folders must be among them and labels
    follow their order; otherwise they are the folders' names, sorted.
    """
    from PIL import Image, UnidentifiedImageError

    folders = class_folders(root)
    if class_names is None:
        names = sort_class_names(list(folders))
    else:
        names = list(class_names)
        unknown = sorted(set(folders) - set(names))
        if unknown:
            raise DataSourceError(
                f"{root / unknown[0]}: class '{unknown[0]}' is not one of the dataset's "
                f"classes ({', '.join(names)})"
            )
    files: list[ImageFile] = []
    for label, name in enumerate(names):
        if name not in folders:
            continue
        paths = image_files(folders[name])
        if class_names is None and len(paths) < min_per_class:
            what = "no images" if not paths else f"only {len(paths)} image(s)"
            raise DataSourceError(
                f"{folders[name]}: class '{name}' has {what}; every class needs at least "
                f"{min_per_class} (CLEARSIGHT_DATA__MIN_IMAGES_PER_CLASS)"
            )
        for path in paths:
            try:
                with Image.open(path) as img:
                    files.append(ImageFile(path, label, img.size, img.mode))
            except (UnidentifiedImageError, OSError) as err:
                raise DataSourceError(f"{path}: not a readable image ({err})") from None
    if not files:
        raise DataSourceError(f"{root}: no .png/.jpg/.bmp/.tif images in its class folders")
    return names, files


@dataclass(frozen=True)
class Target:
    """The size and mode every image is brought to."""

    height: int
    width: int
    channels: int

    @property
    def mode(self) -> str:
        return "L" if self.channels == 1 else "RGB"

    def describe(self) -> str:
        return f"{self.height}x{self.width} {'grey' if self.channels == 1 else 'colour'}"


def infer_target(files: Sequence[ImageFile], settings: DataSettings) -> Target:
    """The settings' size and mode, each one not set taken as the most common in the data
    (ties go to the larger images, then colour: nothing is thrown away)."""
    wide = next((f for f in files if f.mode.startswith(WIDE_MODES)), None)
    if wide is not None:
        eight_bit = next((f for f in files if not f.mode.startswith(WIDE_MODES)), None)
        mixed = f" mixed with 8-bit images such as {eight_bit.path.name}" if eight_bit else ""
        raise DataSourceError(
            f"{wide.path}: {wide.mode} pixels (more than 8 bits per channel){mixed} cannot be "
            "brought to one 0-255 scale; save the images as 8-bit PNG/JPEG"
        )
    sizes = Counter(f.size for f in files)
    width, height = max(sizes, key=lambda s: (sizes[s], s[0] * s[1], s))
    channels_seen = Counter(f.channels for f in files)
    channels = max(channels_seen, key=lambda c: (channels_seen[c], c))
    return Target(
        settings.image_height or height,
        settings.image_width or width,
        settings.image_channels or channels,
    )


def read_to(file: ImageFile, target: Target) -> np.ndarray:
    """One image decoded, converted to the target mode and resized (bilinear) to its size."""
    from PIL import Image

    try:
        with Image.open(file.path) as img:
            picture = img.convert(target.mode)
            if picture.size != (target.width, target.height):
                picture = picture.resize((target.width, target.height), Image.Resampling.BILINEAR)
            return np.asarray(picture, dtype=np.uint8)
    except OSError as err:  # a header that reads but pixels that do not (truncated file)
        raise DataSourceError(f"{file.path}: not a readable image ({err})") from None


def load_class_folders(
    root: Path,
    settings: DataSettings,
    *,
    digit_rules: bool,
    class_names: Sequence[str] | None = None,
    target: Target | None = None,
) -> Dataset:
    """``root/<class>/*.png|jpg|bmp|tif`` as one ``Dataset`` with the folders' class names.

    ``class_names`` and ``target``: read a batch that joins an existing dataset (its classes
    and image shape); otherwise both come from the folder and the settings.
    """
    names, files = scan(root, settings.min_images_per_class, class_names)
    labels = np.asarray([f.label for f in files], np.int64)
    if target is None and digit_rules and _mnist_shape(settings):
        return _load_digits(root, files, labels, names, settings)
    target = target or infer_target(files, settings)
    resized = sum(1 for f in files if f.size != (target.width, target.height))
    converted = sum(1 for f in files if f.channels != target.channels)
    notes = [f"{n} {what}" for n, what in ((resized, "resized"), (converted, "converted")) if n]
    note = f" ({', '.join(notes)} to {target.describe()})" if notes else ""
    images = np.stack([read_to(f, target) for f in files])
    return Dataset(images, labels, f"folder: {root}{note}", tuple(names))


def _mnist_shape(settings: DataSettings) -> bool:
    """Digit rules read MNIST-style 28x28 grey unless the settings name another shape."""
    wanted = (settings.image_height, settings.image_width, settings.image_channels)
    return all(w is None or w == d for w, d in zip(wanted, DIGITS.input_shape, strict=True))


def _load_digits(
    root: Path,
    files: Sequence[ImageFile],
    labels: np.ndarray,
    names: Sequence[str],
    settings: DataSettings,
) -> Dataset:
    """The MNIST path: grey, 28x28 by ``folder_resize`` (``sources.read_image``)."""
    from clearsight.data.sources import read_image

    images = [read_image(f.path, settings.folder_resize) for f in files]
    shapes = {img.shape for img in images}
    if len(shapes) > 1:
        raise DataSourceError(
            f"{root}: images differ in size {sorted(shapes)[:3]} and resize policy is "
            "'reject'; use 'fit' or 'stretch'"
        )
    return Dataset(np.stack(images), labels, f"folder: {root}", tuple(names))
