"""Per-image features that describe a digit and its integrated-gradients map.

Input features extend the data contract's profile (mean intensity and ink fraction, computed
the same way as ``clearsight.data.profile``) with what users change when they draw or scan
differently: the ink's extent (bounding-box height and width: thick or large strokes) and its
centring (ink-mass centroid offset from the image centre: off-centre digits). Attribution
features summarise where the model looked: the centroid and spread of the positive
attribution mass and the share of it that lies on the digit's ink, always from integrated
gradients with the fixed parameters ``MONITOR_IG``. A model that starts "looking" off the
digit is a warning even when the inputs' summary statistics look normal.

All functions take images in the model's 0-1 scale, (N, 28, 28) or (N, 28, 28, 1).
"""

from __future__ import annotations

import numpy as np

from clearsight.digits import IMAGE_SIZE

INPUT_FEATURES = (
    "mean_intensity",
    "ink_fraction",
    "ink_height",
    "ink_width",
    "centroid_dx",
    "centroid_dy",
)
ATTRIBUTION_FEATURES = ("ig_centroid_dx", "ig_centroid_dy", "ig_spread", "ig_ink_share")
# The contract's ink threshold (``clearsight.data.profile.INK_THRESHOLD``, 127.5 of 255) on the
# 0-1 scale; not imported, so that the service does not load the data package (a test checks).
INK_LEVEL = 0.5
CENTRE = (IMAGE_SIZE - 1) / 2.0
# The fixed, server-side integrated-gradients parameters of every attribution summary (the
# reference's and the monitor's): written out rather than taken from the explain defaults, so
# that neither a request's options nor a change of those defaults can change what is compared.
MONITOR_IG_TARGET = "predicted"
MONITOR_IG: dict[str, object] = {
    "steps": 32,
    "baseline": "black",
    "rule": "trapezoid",
    "output": "logits",
}


def _squeeze(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 4:
        x = x[..., 0]
    if x.ndim != 3:
        raise ValueError(f"expected images (N, H, W[, 1]), got shape {x.shape}")
    return x


def _centroid(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, total mass) of non-negative weights (N, H, W); the centre when empty."""
    rows = np.arange(weights.shape[1], dtype=np.float64)
    cols = np.arange(weights.shape[2], dtype=np.float64)
    mass = weights.sum(axis=(1, 2))
    safe = np.where(mass > 0, mass, 1.0)
    r = np.where(mass > 0, (weights.sum(axis=2) * rows).sum(axis=1) / safe, CENTRE)
    c = np.where(mass > 0, (weights.sum(axis=1) * cols).sum(axis=1) / safe, CENTRE)
    return r, c, mass


def _extent(mask: np.ndarray, axis: int) -> np.ndarray:
    """Rows (axis=2) or columns (axis=1) from the first to the last one holding ink; 0 if none."""
    any_ink = mask.any(axis=axis)
    first = np.argmax(any_ink, axis=1)
    last = any_ink.shape[1] - 1 - np.argmax(any_ink[:, ::-1], axis=1)
    return np.where(any_ink.any(axis=1), last - first + 1, 0).astype(np.float64)


def image_features(images: np.ndarray) -> dict[str, np.ndarray]:
    """The input features of each image (float64 arrays of length N, keyed as INPUT_FEATURES).

    ``mean_intensity`` is on the contract's 0-255 scale, so its numbers read like the profile's.
    """
    x = _squeeze(images)
    ink = x > INK_LEVEL
    r, c, _ = _centroid(np.clip(x, 0.0, None))
    return {
        "mean_intensity": 255.0 * x.mean(axis=(1, 2)),
        "ink_fraction": ink.mean(axis=(1, 2)),
        "ink_height": _extent(ink, axis=2),
        "ink_width": _extent(ink, axis=1),
        "centroid_dx": c - CENTRE,
        "centroid_dy": r - CENTRE,
    }


def attribution_features(maps: np.ndarray, images: np.ndarray) -> dict[str, np.ndarray]:
    """Summaries of integrated-gradients maps (N, 28, 28) for their images.

    Only positive attribution counts (evidence for the explained class): its mass centroid
    offset from the centre, its spread (root mean squared distance from that centroid, in
    pixels), and the share of it lying on the image's ink. A map with no positive mass gets
    centroid 0, spread 0 and ink share 0.
    """
    m = np.clip(_squeeze(maps), 0.0, None)
    x = _squeeze(images)
    r, c, mass = _centroid(m)
    rows = np.arange(m.shape[1], dtype=np.float64)[None, :, None]
    cols = np.arange(m.shape[2], dtype=np.float64)[None, None, :]
    distance2 = (rows - r[:, None, None]) ** 2 + (cols - c[:, None, None]) ** 2
    safe = np.where(mass > 0, mass, 1.0)
    spread = np.sqrt((m * distance2).sum(axis=(1, 2)) / safe)
    on_ink = (m * (x > INK_LEVEL)).sum(axis=(1, 2)) / safe
    empty = mass <= 0
    return {
        "ig_centroid_dx": np.where(empty, 0.0, c - CENTRE),
        "ig_centroid_dy": np.where(empty, 0.0, r - CENTRE),
        "ig_spread": np.where(empty, 0.0, spread),
        "ig_ink_share": np.where(empty, 0.0, on_ink),
    }


def integrated_gradients_features(model: object, images: np.ndarray) -> dict[str, np.ndarray]:
    """Integrated gradients for each image's predicted class with ``MONITOR_IG``, summarised.

    The one way attribution summaries are made, for the training reference and for served
    traffic alike: never with a caller's parameters, so no request can move the monitor.
    """
    from clearsight.choices import INTEGRATED_GRADIENTS
    from clearsight.explain import explain

    x = _squeeze(images).astype(np.float32)[..., None]
    if len(x) == 0:
        return {name: np.zeros(0) for name in ATTRIBUTION_FEATURES}
    attribution = explain(
        model,
        x,
        INTEGRATED_GRADIENTS,
        MONITOR_IG_TARGET,
        **MONITOR_IG,
    )
    return attribution_features(attribution.maps, x)
