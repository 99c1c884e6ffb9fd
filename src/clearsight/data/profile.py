"""The per-image profile table that the data contract validates.

One row per image with what the Great Expectations suite needs to judge it: label, size,
channels, pixel range, NaNs, mean intensity, ink fraction, the bright share of the border (the
digits' polarity rule), content hash, plus three derived columns that turn set-level rules
(class balance, duplicates, leakage) into per-row checks. Grey (N, H, W) and colour
(N, H, W, 3) images alike: intensities are over every channel's values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from clearsight.data.dataset import Dataset
from clearsight.data.polarity import BRIGHT, border_pixels
from clearsight.data.splits import Splits

if TYPE_CHECKING:  # pandas (0.4 s) loads on use: `clearsight explain` imports this package
    import pandas as pd

INK_THRESHOLD = 127.5  # a pixel "has ink" above half of the 0-255 range
TRAINING_SPLITS = ("train", "validation")


def profile_dataset(dataset: Dataset, split: str) -> pd.DataFrame:
    """Per-image statistics of one split, computed on the values as stored."""
    import pandas as pd

    values = dataset.images.astype(np.float64)
    flat = values.reshape(len(values), -1)
    n = len(dataset)
    channels = 1 if values.ndim == 3 else values.shape[3]
    with np.errstate(all="ignore"):  # all-NaN images give NaN stats, reported by the suite
        frame = pd.DataFrame(
            {
                "split": [split] * n,
                "row": np.arange(n),
                "label": dataset.labels.astype(np.int64),
                "height": np.full(n, values.shape[1], np.int64),
                "width": np.full(n, values.shape[2], np.int64),
                "channels": np.full(n, channels, np.int64),
                "nan_count": np.isnan(flat).sum(axis=1).astype(np.int64),
                "min": np.nanmin(flat, axis=1) if flat.size else np.zeros(n),
                "max": np.nanmax(flat, axis=1) if flat.size else np.zeros(n),
                "mean_intensity": np.nanmean(flat, axis=1) if flat.size else np.zeros(n),
                "ink_fraction": (np.nan_to_num(flat) > INK_THRESHOLD).mean(axis=1),
                "border_bright": border_bright(values),
                "content_hash": dataset.content_hashes(),
            }
        )
    shares = frame["label"].map(frame["label"].value_counts(normalize=True))
    frame["class_share"] = shares.astype(np.float64)
    return frame


def border_bright(values: np.ndarray) -> np.ndarray:
    """Per image, the share of its border (``polarity.border_pixels``) brighter than
    ``polarity.BRIGHT``; colour pixels by their mean over the channels. Light ink on a dark
    background keeps it near 0; an inverted digit has it near 1."""
    grey = values if values.ndim == 3 else values.mean(axis=3)
    if not grey.size:
        return np.zeros(len(grey))
    mask = border_pixels(np.arange(grey[0].size).reshape(grey.shape[1:])).astype(np.int64)
    border = np.nan_to_num(grey.reshape(len(grey), -1)[:, mask])
    share: np.ndarray = (border > BRIGHT).mean(axis=1)
    return share


def profile_splits(splits: Splits) -> pd.DataFrame:
    """The profile of every split in one table, with duplicate and leakage keys."""
    import pandas as pd

    frame = pd.concat([profile_dataset(ds, name) for name, ds in splits.items()], ignore_index=True)
    frame["split_content_hash"] = frame["split"] + ":" + frame["content_hash"]
    holdout_hashes = set(frame.loc[frame["split"] == "holdout", "content_hash"])
    training_hashes = set(frame.loc[frame["split"].isin(TRAINING_SPLITS), "content_hash"])
    leaked = holdout_hashes & training_hashes
    frame["holdout_leak"] = frame["content_hash"].isin(leaked).astype(np.int64)
    return frame
