"""Dark-on-light digits -> the training polarity (light ink on a dark background), numpy only.

People write digits dark on light (paper, scans, photos, white canvases); MNIST and therefore
the model are light on dark, and an inverted digit is classified at about chance. The image
itself says which it is: a digit is a thin stroke, so the background covers the image's edge.

Decision rule (``to_training_polarity``): the border is the outer 1/28 of the shorter side (one
pixel of a 28x28 image, ten of the web page's 280x280 pad, never less than one). A pixel is
bright when it is above ``BRIGHT`` (127, the middle of 0-255).

- at least ``CLEAR_SHARE`` (75 %) of the border bright: dark on light, inverted;
- at least 75 % of it dark: light on dark, returned untouched (the very same array);
- a mixed border (an all-ink crop, a digit running off the edges): the whole image's median
  decides, since even then the background is most of a digit's image.

Inverting alone leaves paper that was off-white, shaded or JPEG-noisy as a grey haze, which
``clearsight.data.sources.fit_like_mnist`` (it crops to ``pixels > 0``) would take for ink and
the model never saw. So after inverting, the background level is subtracted and the result
clipped at 0: the level is the median of the (inverted) background pixels plus four robust
standard deviations (1.4826 x their median absolute deviation), capped at ``BRIGHT``. A clean
background (spread 0) gives level = its value, so ``255 - x`` of an MNIST digit comes back as
exactly ``x``; JPEG noise and mild shading fall below the level and become 0. The ink loses the
same amount, which keeps strokes' relative intensities. Light-on-dark images are never changed:
they are what the model was trained on, and the data contract judges their backgrounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BRIGHT = 127  # a pixel above this is bright
CLEAR_SHARE = 0.75  # share of the border that must agree for the border to decide
BORDER_FRACTION = 1 / 28  # border width as a fraction of the shorter side
NOISE_SIGMAS = 4.0  # background spread (robust sigmas) removed with the background level
_MAD_TO_SIGMA = 1.4826  # median absolute deviation -> standard deviation for normal noise


@dataclass(frozen=True)
class Polarity:
    """An image in training polarity, and what was done to get it there."""

    image: np.ndarray  # uint8, light ink on a dark background
    inverted: bool
    evidence: str  # "border" or "whole image": which pixels decided
    level: int  # the input's background level (0-255) that decided
    removed: int  # background level subtracted after inverting (0 if not inverted)

    def note(self) -> str | None:
        """A one-line description of the change for people, None when the image was kept."""
        if not self.inverted:
            return None
        text = f"inverted: dark digit on light background ({self.evidence} median {self.level})"
        if self.removed:
            text += f", background level {self.removed} subtracted"
        return text


def border_pixels(image: np.ndarray) -> np.ndarray:
    """The outer frame of a 2-D image (``BORDER_FRACTION`` of the shorter side, >= 1 px)."""
    h, w = image.shape
    width = max(1, int(min(h, w) * BORDER_FRACTION))
    if 2 * width >= min(h, w):
        return image.ravel()
    inner = np.ones((h, w), bool)
    inner[width:-width, width:-width] = False
    return image[inner]


def is_dark_on_light(image: np.ndarray) -> tuple[bool, str, int]:
    """Whether a grayscale 0-255 image is dark on light, which pixels said so and their median.

    The border decides when at least ``CLEAR_SHARE`` of it agrees; otherwise the whole image.
    """
    border = border_pixels(image)
    bright_share = float(np.mean(border > BRIGHT))
    if bright_share >= CLEAR_SHARE or bright_share <= 1.0 - CLEAR_SHARE:
        level = int(np.median(border))
        return bright_share >= CLEAR_SHARE, "border", level
    level = int(np.median(image))
    return level > BRIGHT, "whole image", level


def background_level(background: np.ndarray) -> int:
    """Median plus ``NOISE_SIGMAS`` robust sigmas of light-on-dark background pixels (<= 127)."""
    dark = background[background <= BRIGHT]
    if dark.size == 0:
        return 0
    median = float(np.median(dark))
    spread = _MAD_TO_SIGMA * float(np.median(np.abs(dark - median)))
    return int(min(BRIGHT, np.ceil(median + NOISE_SIGMAS * spread)))


def to_training_polarity(image: np.ndarray) -> Polarity:
    """A 2-D grayscale uint8 image -> light ink on dark, inverted only if it was dark on light.

    An image that is already light on dark is returned as the same array. Blank images of
    either shade are fine: white becomes black, black stays black.
    """
    pixels = np.asarray(image)
    if pixels.ndim != 2 or pixels.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 image, got {pixels.dtype} {pixels.shape}")
    if pixels.size == 0:
        return Polarity(pixels, False, "border", 0, 0)
    dark_on_light, evidence, level = is_dark_on_light(pixels)
    if not dark_on_light:
        return Polarity(pixels, False, evidence, level, 0)
    flipped = 255 - pixels.astype(np.int16)
    background = border_pixels(flipped) if evidence == "border" else flipped.ravel()
    removed = background_level(background)
    restored = np.clip(flipped - removed, 0, 255).astype(np.uint8)
    return Polarity(restored, True, evidence, level, removed)
