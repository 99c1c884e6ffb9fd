"""Request images -> float32 (28, 28) in 0-1, the model's input; each problem one ``ImageError``.

Arrays must already be 28x28 and say their scale; they are taken as given. Encoded PNG/JPEG
images of any size are what people make, so they are brought to the training distribution
(``clearsight.data.sources.prepare_gray``): grayscale, dark-on-light digits turned light on
dark (``clearsight.data.polarity``, decided from the image's border), then, unless already
28x28, cropped to the ink and centred like MNIST. Each step taken is reported with the image.
Nothing else is repaired: NaN, out-of-range values and odd shapes are refused.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass

import numpy as np

from clearsight.data.sources import prepare_gray
from clearsight.digits import IMAGE_SIZE, SCALE_MAX, to_model_input
from clearsight.errors import ImageError

ACCEPTED_FORMATS = ("PNG", "JPEG")
MAX_DECODED_PIXELS = 4096 * 4096  # refuse decompression bombs before decoding them
_DATA_URL = re.compile(r"^data:image/[a-zA-Z0-9.+-]+;base64,")


def from_array(data: object, scale: str) -> np.ndarray:
    """Nested lists (or an array) of 28x28 numbers in ``scale`` ('0-1' or '0-255') -> 0-1."""
    try:
        array = np.asarray(data, dtype=np.float64)
    except (ValueError, TypeError):
        raise ImageError("rows have different lengths or non-numeric values") from None
    if array.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise ImageError(f"expected shape ({IMAGE_SIZE}, {IMAGE_SIZE}), got {array.shape}")
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
    return to_model_input(array, top)


@dataclass(frozen=True)
class DecodedImage:
    """A request image as the model's float32 (28, 28) in 0-1, and how it was prepared."""

    pixels: np.ndarray
    preprocessing: tuple[str, ...] = ()


def decode_bytes_with_notes(data: bytes) -> DecodedImage:
    """A PNG or JPEG file's bytes -> the model's input, in training polarity, fitted like MNIST."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
            width, height = image.size
            if width * height > MAX_DECODED_PIXELS:
                raise ImageError(f"image of {width}x{height} pixels is too large to decode")
            gray = np.asarray(image.convert("L"))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not a readable PNG or JPEG image") from None
    except Exception as err:  # truncated or corrupt files raise all sorts of decoder errors
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ImageError(f"broken image data ({reason})") from None
    prepared = prepare_gray(gray, "fit", normalise_polarity=True)
    return DecodedImage(to_model_input(prepared.pixels), prepared.steps)


def decode_base64_with_notes(text: str) -> DecodedImage:
    """base64 text of a PNG/JPEG (a data URL prefix is allowed) -> the model's input and notes."""
    payload = _DATA_URL.sub("", text.strip(), count=1)
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("not valid base64") from None
    if not raw:
        raise ImageError("empty image data")
    return decode_bytes_with_notes(raw)


def decode_base64(text: str) -> np.ndarray:
    """base64 text of a PNG/JPEG (a data URL prefix is allowed) -> float32 (28, 28) in 0-1."""
    return decode_base64_with_notes(text).pixels


def to_batch(images: list[np.ndarray]) -> np.ndarray:
    """(28, 28) images -> the model's float32 (N, 28, 28, 1) batch."""
    return np.stack(images).astype(np.float32)[..., None]
