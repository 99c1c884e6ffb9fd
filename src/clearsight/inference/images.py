"""Request images -> the served task's pixels in 0-1; each problem one ``ImageError``.

Pixels of one image are float32 in 0-1 in the task's stored shape: (H, W) for grey tasks,
(H, W, 3) for colour ones (``ImageTask.stored_shape``); ``to_batch`` makes the model's
(N, H, W, C). Arrays must already have that shape and say their scale; they are taken as
given. Encoded PNG/JPEG images of any size and mode are what people make, so they are brought
to the task: converted to its mode (grey or RGB) and resized (bilinear) to its size. Only for
MNIST-like digit tasks (``ImageTask.digit_like``, grey) are they brought to the training
distribution instead (``clearsight.data.sources.prepare_gray``): dark-on-light digits turned
light on dark (decided from the image's border), then, unless already 28x28, cropped to the
ink and centred like MNIST. Each step taken is reported with the image. Nothing else is
repaired: NaN, out-of-range values and odd shapes are refused.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass

import numpy as np

from clearsight.data.sources import prepare_gray
from clearsight.errors import ImageError
from clearsight.task import DIGITS, SCALE_MAX, WIDE_MODES, ImageTask, to_model_input

ACCEPTED_FORMATS = ("PNG", "JPEG")
MAX_DECODED_PIXELS = 4096 * 4096  # refuse decompression bombs before decoding them
_DATA_URL = re.compile(r"^data:image/[a-zA-Z0-9.+-]+;base64,")
_MODE_NAMES = {"L": "grey", "RGB": "colour"}


def expected_shape(task: ImageTask) -> str:
    """How an array image of ``task`` is laid out, for error messages."""
    if task.channels == 1:
        return f"({task.height}, {task.width}): {task.height} rows of {task.width} numbers"
    return f"({task.height}, {task.width}, 3): {task.height} rows of {task.width} [r, g, b] triples"


def from_array(data: object, scale: str, task: ImageTask = DIGITS) -> np.ndarray:
    """Nested lists (or an array) of the task's stored shape in ``scale`` ('0-1' or '0-255')
    -> float32 0-1 of that shape. A grey task also takes (H, W, 1)."""
    try:
        array = np.asarray(data, dtype=np.float64)
    except (ValueError, TypeError):
        raise ImageError("rows have different lengths or non-numeric values") from None
    if task.channels == 1 and array.shape == task.input_shape:
        array = array[..., 0]
    if array.shape != task.stored_shape:
        raise ImageError(f"expected shape {expected_shape(task)}; got {array.shape}")
    return scaled(array, scale)


def scaled(values: np.ndarray, scale: object) -> np.ndarray:
    """Finite numbers within the declared ``scale`` -> float32 in 0-1 (same shape).

    The one check of caller-declared numbers, for JSON arrays and Open Inference Protocol
    tensors alike: the same numbers mean different images under each scale.
    """
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ImageError(f"{bad} values are NaN or infinite")
    top = SCALE_MAX.get(scale) if isinstance(scale, str) else None
    if top is None:
        raise ImageError(f"scale must be '0-1' or '0-255', got {scale!r}")
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > top:
        raise ImageError(
            f"values must lie in [0, {top:g}] for scale '{scale}', got [{low:g}, {high:g}]"
        )
    return (array / top).astype(np.float32)


@dataclass(frozen=True)
class DecodedImage:
    """A request image as the task's float32 pixels in 0-1, and how it was prepared."""

    pixels: np.ndarray
    preprocessing: tuple[str, ...] = ()


def _open(data: bytes, mode: str) -> tuple[np.ndarray, str]:
    """A PNG or JPEG file's pixels in ``mode`` (uint8) and the file's own mode."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
            width, height = image.size
            if width * height > MAX_DECODED_PIXELS:
                raise ImageError(f"image of {width}x{height} pixels is too large to decode")
            if image.mode.startswith(WIDE_MODES):
                raise ImageError(
                    f"{image.mode} pixels (more than 8 bits per channel) have no agreed 0-255 "
                    "scale; send an 8-bit PNG or JPEG"
                )
            return np.asarray(image.convert(mode)), image.mode
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not a readable PNG or JPEG image") from None
    except Exception as err:  # truncated or corrupt files raise all sorts of decoder errors
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ImageError(f"broken image data ({reason})") from None


def resized(pixels: np.ndarray, task: ImageTask, steps: list[str]) -> np.ndarray:
    """uint8 pixels brought to the task's size (bilinear), the step noted when one was taken."""
    height, width = pixels.shape[:2]
    if (height, width) == (task.height, task.width):
        return pixels
    from PIL import Image

    image = Image.fromarray(pixels).resize((task.width, task.height), Image.Resampling.BILINEAR)
    steps.append(
        f"resized: {width}x{height} to {task.width}x{task.height} (the model's input), "
        "aspect ratio not kept"
    )
    return np.asarray(image)


def decode_bytes_with_notes(data: bytes, task: ImageTask = DIGITS) -> DecodedImage:
    """A PNG or JPEG file's bytes -> the task's pixels, with the steps taken to get there."""
    pixels, source_mode = _open(data, task.mode)
    steps: list[str] = []
    if task.digit_like and task.channels == 1:  # MNIST-like: polarity and the MNIST fit
        prepared = prepare_gray(pixels, "fit", normalise_polarity=True)
        pixels, steps = prepared.pixels, list(prepared.steps)
    else:
        source = _MODE_NAMES.get("RGB" if source_mode in ("RGBA", "P", "CMYK") else source_mode)
        if source is not None and source != _MODE_NAMES[task.mode]:
            steps.append(f"converted: {source} image to {_MODE_NAMES[task.mode]}, as the model's")
    pixels = resized(pixels, task, steps)
    return DecodedImage(scaled(pixels, "0-255"), tuple(steps))


def decode_base64_with_notes(text: str, task: ImageTask = DIGITS) -> DecodedImage:
    """base64 text of a PNG/JPEG (a data URL prefix is allowed) -> the task's pixels and notes."""
    payload = _DATA_URL.sub("", text.strip(), count=1)
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("not valid base64") from None
    if not raw:
        raise ImageError("empty image data")
    return decode_bytes_with_notes(raw, task)


def decode_base64(text: str, task: ImageTask = DIGITS) -> np.ndarray:
    """base64 text of a PNG/JPEG (a data URL prefix is allowed) -> float32 pixels in 0-1."""
    return decode_base64_with_notes(text, task).pixels


def to_batch(images: list[np.ndarray]) -> np.ndarray:
    """Images in a task's stored shape ((H, W) or (H, W, 3)) -> the model's float32
    (N, H, W, C) batch."""
    return to_model_input(np.stack(images), 1.0)
