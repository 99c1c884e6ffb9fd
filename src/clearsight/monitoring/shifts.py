"""Synthetic shifts of digits, for checking that the monitor notices them (tests, benchmark).

Each takes images (N, 28, 28) in 0-1 and returns shifted copies, using SciPy's ndimage:
what users plausibly send instead of MNIST-like digits.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage


def inverted(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark digits on a light background (paper, a white canvas) sent as arrays."""
    return 1.0 - x


def rotated(
    x: np.ndarray, rng: np.random.Generator, low: float = 35, high: float = 55
) -> np.ndarray:
    """Rotated by 35-55 degrees (``low``-``high``) either way (a tilted phone photo)."""
    angles = rng.uniform(low, high, len(x)) * rng.choice([-1, 1], len(x))
    return np.stack(
        [ndimage.rotate(img, a, reshape=False, order=1) for img, a in zip(x, angles, strict=True)]
    ).clip(0, 1)


def thick(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Thick strokes: grey dilation with a 3x3 window (a marker instead of a pen)."""
    return np.stack([ndimage.grey_dilation(img, size=(3, 3)) for img in x])


def shifted(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Off-centre: moved 5-7 pixels in a random direction (a digit drawn in a corner)."""
    out = []
    for img in x:
        angle = rng.uniform(0, 2 * np.pi)
        distance = rng.uniform(5, 7)
        offset = (distance * np.sin(angle), distance * np.cos(angle))
        out.append(ndimage.shift(img, offset, order=1, mode="constant"))
    return np.stack(out).clip(0, 1)


def noisy(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian sensor noise, sigma 0.2 of the range, clipped (a grainy scan)."""
    return (x + rng.normal(0.0, 0.2, x.shape)).clip(0, 1)


SHIFTS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "inverted": inverted,
    "rotated": rotated,
    "thick": thick,
    "shifted": shifted,
    "noisy": noisy,
}
