"""Scoring a model on the frozen holdout: the numbers runs are compared by.

scikit-learn computes the metrics; this module decides which ones matter and names them
the same way everywhere (MLflow metrics, the model card, the promotion policy).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras
import numpy as np
from sklearn import metrics as skm

from clearsight.task import to_model_input


@dataclass(frozen=True)
class Evaluation:
    """Holdout metrics plus the per-image outcomes paired comparisons need.

    The number of classes is read from the probabilities (the model's output), never from a
    constant: the same code scores the digits and any other dataset.
    """

    labels: np.ndarray
    probabilities: np.ndarray  # (N, n_classes): the model's output decides how many classes

    @property
    def n_classes(self) -> int:
        return int(self.probabilities.shape[1])

    @property
    def classes(self) -> range:
        """Every class index, present in the holdout or not (fixed-width metric tables)."""
        return range(self.n_classes)

    @property
    def predictions(self) -> np.ndarray:
        predicted: np.ndarray = self.probabilities.argmax(axis=1)
        return predicted

    @property
    def correct(self) -> np.ndarray:
        correct: np.ndarray = self.predictions == self.labels
        return correct

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())

    @property
    def macro_f1(self) -> float:
        return float(skm.f1_score(self.labels, self.predictions, average="macro"))

    @property
    def log_loss(self) -> float:
        return float(skm.log_loss(self.labels, self.probabilities, labels=self.classes))

    @property
    def per_class_recall(self) -> np.ndarray:
        return np.asarray(
            skm.recall_score(
                self.labels,
                self.predictions,
                labels=self.classes,
                average=None,
                zero_division=0,
            )
        )

    @property
    def per_class_precision(self) -> np.ndarray:
        return np.asarray(
            skm.precision_score(
                self.labels,
                self.predictions,
                labels=self.classes,
                average=None,
                zero_division=0,
            )
        )

    @property
    def confusion(self) -> np.ndarray:
        return np.asarray(skm.confusion_matrix(self.labels, self.predictions, labels=self.classes))

    def metrics(self, prefix: str = "holdout_") -> dict[str, float]:
        """Flat metric names for MLflow: accuracy, macro F1, log-loss, recall per class."""
        out = {
            f"{prefix}accuracy": self.accuracy,
            f"{prefix}macro_f1": self.macro_f1,
            f"{prefix}log_loss": self.log_loss,
            f"{prefix}min_class_recall": float(self.per_class_recall.min()),
        }
        out |= {f"{prefix}recall_{c}": float(r) for c, r in enumerate(self.per_class_recall)}
        return out


def predict_probabilities(model: keras.Model, pixels: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Class probabilities for uint8 pixels, by direct calls (no ``predict`` overhead)."""
    x = to_model_input(pixels)
    parts = [
        keras.ops.convert_to_numpy(model(x[i : i + batch], training=False))
        for i in range(0, len(x), batch)
    ]
    probabilities = np.concatenate(parts).astype(np.float64)
    # float32 softmax sums to 1 only within ~1e-7; log-loss wants exact probabilities.
    return probabilities / probabilities.sum(axis=1, keepdims=True)


def evaluate(model: keras.Model, pixels: np.ndarray, labels: np.ndarray) -> Evaluation:
    return Evaluation(labels=np.asarray(labels), probabilities=predict_probabilities(model, pixels))


def single_image_latency_ms(
    model: keras.Model, pixels: np.ndarray, repeats: int = 50
) -> dict[str, float]:
    """p50/p95 of one-image forward passes, warm: what a serving request would pay."""
    x = to_model_input(pixels[:1])
    for _ in range(5):
        model(x, training=False)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        keras.ops.convert_to_numpy(model(x, training=False))
        times.append((time.perf_counter() - start) * 1000)
    return {"p50": float(np.percentile(times, 50)), "p95": float(np.percentile(times, 95))}


def mcnemar_p_value(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact McNemar test on paired outcomes: is the difference more than chance?"""
    from scipy.stats import binomtest

    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
