"""The champion's training reference: what "normal" traffic looks like for one model version.

Computed once per training run (``write_reference``, called by ``pipelines.train.train_and_assess``)
and logged as the run artifact ``monitoring/reference.npz``: input features of a sample of
training images, integrated-gradients summaries and the model's predictions (class prior,
confidences) on a sample of validation images (not training images: the model is more
confident on what it was fitted to, and served digits are new to it), and the per-image
bounds derived from the input features. For a version logged before this existed, the
monitor computes it from the frozen holdout instead and says so (``source``).

The file names its input features (grey or per-channel colour names, see
``features.input_feature_names``) and the model's number of classes, so a reference of any
dataset reads back whole; one written before it did is a 28x28 grey digits reference.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clearsight.monitoring.bounds import Bounds
from clearsight.monitoring.features import (
    ATTRIBUTION_FEATURES,
    INPUT_FEATURES,
    image_features,
    integrated_gradients_features,
)
from clearsight.task import DIGITS, PIXEL_MAX, to_model_input

ARTIFACT = "monitoring/reference.npz"  # relative path in a training run's artifacts
FEATURE_SAMPLE = 1000  # training images whose input features form the reference
ATTRIBUTION_SAMPLE = 200  # validation images explained with integrated gradients


@dataclass(frozen=True)
class Reference:
    """Reference distributions: input features, attribution summaries, predictions."""

    features: dict[str, np.ndarray]
    attributions: dict[str, np.ndarray]
    predicted: np.ndarray  # predicted classes on the validation sample
    confidences: np.ndarray  # their confidences
    bounds: Bounds
    source: str
    n_classes: int = DIGITS.n_classes  # the model's outputs (a reference before this: digits)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The input features, in order (grey names, or per-channel names for colour)."""
        return tuple(self.features)

    @property
    def class_prior(self) -> np.ndarray:
        """Predicted-class shares, add-one smoothed so no class has probability zero."""
        counts = np.bincount(self.predicted.astype(np.int64), minlength=self.n_classes) + 1.0
        return counts / counts.sum()

    def save(self, path: Path) -> Path:
        """Write atomically (temporary file + rename): a reader never sees half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"feature_{k}": v for k, v in self.features.items()}
        arrays |= {f"attribution_{k}": v for k, v in self.attributions.items()}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez_compressed(
                    handle,
                    predicted=self.predicted,
                    confidences=self.confidences,
                    meta=np.array(
                        json.dumps(
                            {
                                "bounds": self.bounds.to_dict(),
                                "source": self.source,
                                "features": list(self.features),
                                "n_classes": self.n_classes,
                            }
                        )
                    ),
                    **arrays,  # type: ignore[arg-type]  # numpy's stub lets **arrays fill allow_pickle
                )
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: Path) -> Reference:
        """Read ``save``'s file; one without feature names or a class count (written before
        they were stored) is a grey digits reference: ``INPUT_FEATURES``, 10 classes."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            names = meta.get("features", INPUT_FEATURES)
            return cls(
                features={k: data[f"feature_{k}"] for k in names},
                attributions={k: data[f"attribution_{k}"] for k in ATTRIBUTION_FEATURES},
                predicted=data["predicted"],
                confidences=data["confidences"],
                bounds=Bounds.from_dict(meta["bounds"]),
                source=meta["source"],
                n_classes=int(meta.get("n_classes", DIGITS.n_classes)),
            )


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(size, n), replace=False))


def compute_reference(
    model: object,
    feature_images: np.ndarray,
    prediction_images: np.ndarray,
    source: str,
    *,
    feature_sample: int = FEATURE_SAMPLE,
    attribution_sample: int = ATTRIBUTION_SAMPLE,
    seed: int = 0,
) -> Reference:
    """A reference from images in the model's 0-1 scale: grey (N, H, W[, 1]) or colour
    (N, H, W, 3), of the model's input size.

    ``feature_images`` (training images) give the input features and bounds;
    ``prediction_images`` (validation or holdout images, unseen in fitting) give the
    predictions and the integrated-gradients summaries.
    """
    from clearsight.explain import model_gradients
    from clearsight.explain.gradients import PROBABILITIES

    chosen = feature_images[_sample(len(feature_images), feature_sample, seed)]
    features = image_features(chosen)
    unseen = to_model_input(prediction_images, scale_max=1.0)
    probabilities = np.asarray(model_gradients(model).scores(unseen, PROBABILITIES))
    explained = unseen[_sample(len(unseen), attribution_sample, seed + 1)]
    return Reference(
        features=features,
        attributions=integrated_gradients_features(model, explained),
        predicted=probabilities.argmax(axis=1),
        confidences=probabilities.max(axis=1),
        bounds=Bounds.from_features(features, source),
        source=source,
        n_classes=int(probabilities.shape[1]),
    )


def write_reference(
    model: object, train_pixels: np.ndarray, validation_pixels: np.ndarray, folder: Path
) -> Path:
    """The training run's reference under ``folder`` at ``ARTIFACT`` (pixels 0-255, as stored:
    grey (N, H, W) or colour (N, H, W, 3))."""
    reference = compute_reference(
        model,
        np.asarray(train_pixels, dtype=np.float32) / PIXEL_MAX,
        np.asarray(validation_pixels, dtype=np.float32) / PIXEL_MAX,
        "training run: training and validation images",
    )
    return reference.save(folder / ARTIFACT)
