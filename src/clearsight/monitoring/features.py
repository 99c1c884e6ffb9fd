"""Per-image features that describe a digit and its integrated-gradients map.

Input features extend the data contract's profile (mean intensity and ink fraction, computed
the same way as ``clearsight.data.profile``) with what users change when they draw or scan
differently: the ink's extent (bounding-box height and width: thick or large strokes) and its
centring (ink-mass centroid offset from the image centre: off-centre digits). Attribution
features summarise where the model looked: the centroid and spread of the positive
attribution mass and the share of it that lies on the digit's ink, always from integrated
gradients with the fixed parameters ``MONITOR_IG``. A model that starts "looking" off the
digit is a warning even when the inputs' summary statistics look normal.

Colour images get every input feature once per channel, named with a suffix
(``mean_intensity_r``, ``ink_fraction_g``, ...; ``input_feature_names``): a shift in one colour
(a new camera's white balance) shows in that channel's distribution even when brightness does
not. Grey images keep the plain names, so references and traffic logged before colour existed
still read. "Ink" is a channel value above ``INK_LEVEL``; centroid offsets are from the image's
own centre, whatever its size. Attribution features are per pixel (integrated-gradients maps
are summed over channels), with ink being any channel above ``INK_LEVEL``.

All functions take images in the model's 0-1 scale: grey (N, H, W) or (N, H, W, 1), colour
(N, H, W, 3).
"""

from __future__ import annotations

import numpy as np

from clearsight.task import DIGITS

INPUT_FEATURES = (
    "mean_intensity",
    "ink_fraction",
    "ink_height",
    "ink_width",
    "centroid_dx",
    "centroid_dy",
)
ATTRIBUTION_FEATURES = ("ig_centroid_dx", "ig_centroid_dy", "ig_spread", "ig_ink_share")
COLOUR_SUFFIXES = ("_r", "_g", "_b")
# The contract's ink threshold (``clearsight.data.profile.INK_THRESHOLD``, 127.5 of 255) on the
# 0-1 scale; not imported, so that the service does not load the data package (a test checks).
INK_LEVEL = 0.5
CENTRE = (DIGITS.height - 1) / 2.0  # of a 28x28 digit; other sizes use their own centre
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


def channel_suffixes(channels: int) -> tuple[str, ...]:
    """The name suffix of each channel's features: none for grey, ``_r/_g/_b`` for colour."""
    if channels == 1:
        return ("",)
    if channels == len(COLOUR_SUFFIXES):
        return COLOUR_SUFFIXES
    return tuple(f"_c{c}" for c in range(channels))


def input_feature_names(channels: int = 1) -> tuple[str, ...]:
    """The input features of images with ``channels`` channels, feature by feature:
    ``INPUT_FEATURES`` for grey, ``mean_intensity_r, mean_intensity_g, ...`` for colour."""
    return tuple(name + s for name in INPUT_FEATURES for s in channel_suffixes(channels))


def _images(images: np.ndarray) -> np.ndarray:
    """float64 (N, H, W, C) from grey (N, H, W) or channels-last (N, H, W, C) images."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"expected images (N, H, W[, C]), got shape {x.shape}")
    return x


def _maps(maps: np.ndarray) -> np.ndarray:
    """float64 (N, H, W) attribution maps, a trailing channel axis of 1 dropped."""
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim == 4 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.ndim != 3:
        raise ValueError(f"expected maps (N, H, W), got shape {m.shape}")
    return m


def _centroid(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, total mass) of non-negative weights (N, H, W); the centre when empty."""
    rows = np.arange(weights.shape[1], dtype=np.float64)
    cols = np.arange(weights.shape[2], dtype=np.float64)
    mass = weights.sum(axis=(1, 2))
    safe = np.where(mass > 0, mass, 1.0)
    centre_r, centre_c = _centre(weights)
    r = np.where(mass > 0, (weights.sum(axis=2) * rows).sum(axis=1) / safe, centre_r)
    c = np.where(mass > 0, (weights.sum(axis=1) * cols).sum(axis=1) / safe, centre_c)
    return r, c, mass


def _centre(images: np.ndarray) -> tuple[float, float]:
    """The (row, column) centre of (N, H, W) images."""
    return (images.shape[1] - 1) / 2.0, (images.shape[2] - 1) / 2.0


def _extent(mask: np.ndarray, axis: int) -> np.ndarray:
    """Rows (axis=2) or columns (axis=1) from the first to the last one holding ink; 0 if none."""
    any_ink = mask.any(axis=axis)
    first = np.argmax(any_ink, axis=1)
    last = any_ink.shape[1] - 1 - np.argmax(any_ink[:, ::-1], axis=1)
    return np.where(any_ink.any(axis=1), last - first + 1, 0).astype(np.float64)


def _channel_features(x: np.ndarray) -> dict[str, np.ndarray]:
    """``INPUT_FEATURES`` of one channel (N, H, W)."""
    ink = x > INK_LEVEL
    r, c, _ = _centroid(np.clip(x, 0.0, None))
    centre_r, centre_c = _centre(x)
    return {
        "mean_intensity": 255.0 * x.mean(axis=(1, 2)),
        "ink_fraction": ink.mean(axis=(1, 2)),
        "ink_height": _extent(ink, axis=2),
        "ink_width": _extent(ink, axis=1),
        "centroid_dx": c - centre_c,
        "centroid_dy": r - centre_r,
    }


def image_features(images: np.ndarray) -> dict[str, np.ndarray]:
    """The input features of each image (float64 arrays of length N), keyed as
    ``input_feature_names(channels)``: ``INPUT_FEATURES`` for grey images.

    ``mean_intensity`` is on the contract's 0-255 scale, so its numbers read like the profile's.
    """
    x = _images(images)
    per_channel = {
        suffix: _channel_features(x[..., c])
        for c, suffix in enumerate(channel_suffixes(x.shape[-1]))
    }
    return {
        name + suffix: per_channel[suffix][name]
        for name in INPUT_FEATURES
        for suffix in per_channel
    }


def attribution_features(maps: np.ndarray, images: np.ndarray) -> dict[str, np.ndarray]:
    """Summaries of integrated-gradients maps (N, H, W) for their images (N, H, W[, C]).

    Only positive attribution counts (evidence for the explained class): its mass centroid
    offset from the centre, its spread (root mean squared distance from that centroid, in
    pixels), and the share of it lying on the image's ink (any channel above ``INK_LEVEL``).
    A map with no positive mass gets centroid 0, spread 0 and ink share 0.
    """
    m = np.clip(_maps(maps), 0.0, None)
    x = _images(images).max(axis=-1)
    r, c, mass = _centroid(m)
    centre_r, centre_c = _centre(m)
    rows = np.arange(m.shape[1], dtype=np.float64)[None, :, None]
    cols = np.arange(m.shape[2], dtype=np.float64)[None, None, :]
    distance2 = (rows - r[:, None, None]) ** 2 + (cols - c[:, None, None]) ** 2
    safe = np.where(mass > 0, mass, 1.0)
    spread = np.sqrt((m * distance2).sum(axis=(1, 2)) / safe)
    on_ink = (m * (x > INK_LEVEL)).sum(axis=(1, 2)) / safe
    empty = mass <= 0
    return {
        "ig_centroid_dx": np.where(empty, 0.0, c - centre_c),
        "ig_centroid_dy": np.where(empty, 0.0, r - centre_r),
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

    x = _images(images).astype(np.float32)
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
