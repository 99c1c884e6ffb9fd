"""Fitting the CNN: seeded, early-stopped, fast input path, device-aware.

Data stays resident in memory as one float32 array and goes to ``model.fit`` in large
batches, with several steps per compiled execution where the backend supports it: on a small
model the per-step Python overhead, not the maths, is what costs time. Light augmentation
(random shifts and small rotations) runs inside the compiled step through a wrapper model, so
the trained model itself has no augmentation layers.

The model is built for the task (``ImageTask``: shape and classes) the data was gated for;
data of another shape is refused with one line before anything is built. Augmentation is on by
default only for digit-like data, whose background is black (the fill of shifted-in pixels);
other data is filled by reflection when a user switches it on. Which changes keep a class is
the dataset's to say (a turned 6 is a 9; a shifted part may be a defect), so it is not guessed;
an earlier measurement on synthetic 32x32 colour shapes (``data.class_folders``) also saw the
digits' augmentation lower holdout accuracy (about 0.94 without, 0.74 with).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from clearsight.config import TrainSettings
from clearsight.errors import DataSourceError, TrainingError
from clearsight.model.cnn import Architecture, build_cnn
from clearsight.model.devices import DeviceInfo, data_parallel, detect_device, distribution_name
from clearsight.task import DIGITS, ImageTask, to_model_input


@dataclass
class TrainResult:
    """The trained model with what a run should log about how it was trained."""

    model: keras.Model
    history: dict[str, list[float]]
    epoch_seconds: list[float]
    device: DeviceInfo
    fit_params: dict[str, Any] = field(default_factory=dict)

    @property
    def epochs_run(self) -> int:
        return len(self.epoch_seconds)

    @property
    def first_epoch_seconds(self) -> float:
        """Includes tracing and compilation."""
        return self.epoch_seconds[0]

    @property
    def steady_epoch_seconds(self) -> float:
        """Median epoch time after the first (compile) epoch."""
        rest = self.epoch_seconds[1:] or self.epoch_seconds
        return float(np.median(rest))


class EpochTimer(keras.callbacks.Callback):  # type: ignore[misc]  # Keras ships no types
    """Wall time of each epoch, training and validation included."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def architecture(settings: TrainSettings) -> Architecture:
    return Architecture(
        conv1_filters=settings.conv1_filters,
        conv2_filters=settings.conv2_filters,
        dense_dropout=settings.dense_dropout,
        conv_dropout=settings.conv_dropout,
    )


def seed_everything(settings: TrainSettings) -> None:
    """Python, NumPy and backend seeds; deterministic TensorFlow kernels when asked."""
    keras.utils.set_random_seed(settings.seed)
    if settings.deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


# A small dataset still gets this many updates per epoch: the batch shrinks (not below
# MIN_BATCH_SIZE) rather than leave a few hundred images with 2-3 steps an epoch, which the
# default batch of 256 (sized for the 48,000 digits) would.
MIN_STEPS_PER_EPOCH = 12
MIN_BATCH_SIZE = 16


def effective_batch_size(batch_size: int, n_train: int) -> int:
    """``batch_size``, or smaller for a dataset too small for ``MIN_STEPS_PER_EPOCH`` batches."""
    enough = max(MIN_BATCH_SIZE, math.ceil(n_train / MIN_STEPS_PER_EPOCH))
    return max(1, min(batch_size, enough))


def resolve_fit_params(settings: TrainSettings, device: DeviceInfo, n_train: int) -> dict[str, Any]:
    """Pick the batch size, steps per execution, jit and precision for this backend, device
    and amount of data."""
    batch_size = effective_batch_size(settings.batch_size, n_train)
    steps_per_epoch = math.ceil(n_train / batch_size)
    steps = settings.steps_per_execution
    if steps is None:
        # The torch trainer runs one step per call; TF and JAX fuse a loop of steps.
        steps = 1 if device.backend == "torch" else max(1, min(32, steps_per_epoch))
    jit_modes: dict[str, bool | str] = {"auto": "auto", "on": True, "off": False}
    jit = jit_modes[settings.jit_compile]
    precision = "mixed_bfloat16" if settings.mixed_precision == "on" else "float32"
    if settings.mixed_precision == "auto" and bf16_helps(device):
        precision = "mixed_bfloat16"
    return {
        "batch_size": batch_size,
        "steps_per_execution": steps,
        "jit_compile": jit,
        "dtype_policy": precision,
        "steps_per_epoch": steps_per_epoch,
    }


def bf16_helps(device: DeviceInfo) -> bool:
    """Where mixed bfloat16 was measured to speed training up.

    On 2 EPYC cores with AVX512_BF16, TensorFlow's oneDNN kernels made an epoch about 1.3x
    faster at the same accuracy; on an H100 under JAX it gave nothing. Elsewhere: float32.
    """
    if device.kind != "cpu" or device.backend != "tensorflow":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def float32_copy(model: keras.Model, arch: Architecture, task: ImageTask = DIGITS) -> keras.Model:
    """The same weights in a float32 model: explanations need float32 gradients.

    Mixed precision keeps float32 master weights, so nothing is lost; bfloat16 activations
    would otherwise break the completeness of integrated gradients (3 significant digits).
    """
    copy = build_cnn(task, arch)
    copy.set_weights(model.get_weights())
    return copy


def augments(settings: TrainSettings, task: ImageTask) -> bool:
    """The setting when given; by default only digit-like data is augmented."""
    return task.digit_like if settings.augment is None else settings.augment


def augmenter(seed: int, digit_like: bool = True) -> keras.Sequential:
    """Small shifts (10 %) and rotations (about 9 degrees): digits stay digits.

    Shifted-in pixels are black for digit-like data (its background) and a reflection of the
    image otherwise, so no border appears that the data never has.
    """
    fill = "constant" if digit_like else "reflect"
    return keras.Sequential(
        [
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode=fill, seed=seed),
            keras.layers.RandomRotation(0.025, fill_mode=fill, seed=seed + 1),
        ],
        name="augment",
    )


def train(
    train_pixels: np.ndarray,
    train_labels: np.ndarray,
    val_pixels: np.ndarray,
    val_labels: np.ndarray,
    settings: TrainSettings,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
    task: ImageTask = DIGITS,
) -> TrainResult:
    """Build the CNN for ``task`` and fit it on uint8 pixels; returns the model with the best
    validation loss. Pixels of another shape, or labels outside the task's classes, are a
    one-line ``DataSourceError``."""
    check_data(train_pixels, train_labels, task, "training")
    check_data(val_pixels, val_labels, task, "validation")
    seed_everything(settings)
    device = detect_device()
    params = resolve_fit_params(settings, device, len(train_labels))
    distribution = data_parallel(settings.distribution, device.backend)
    params["distribution"] = distribution_name(distribution)
    scope = distribution.scope() if distribution is not None else contextlib.nullcontext()
    with scope:
        return _fit(
            train_pixels,
            train_labels,
            val_pixels,
            val_labels,
            settings,
            params,
            device,
            callbacks,
            verbose,
            task,
        )


def check_data(pixels: np.ndarray, labels: np.ndarray, task: ImageTask, split: str) -> None:
    """The data must be what the task says: its stored image shape and class indices."""
    shape = tuple(pixels.shape[1:])
    if shape != task.stored_shape and shape != task.input_shape:
        size = "x".join(str(d) for d in shape) or "scalar"
        raise DataSourceError(
            f"{split} images are {size} but the model is for {task.describe()} "
            f"({'x'.join(str(d) for d in task.input_shape)}); resize the data or set "
            "data.image_height/image_width/image_channels"
        )
    if len(labels) != len(pixels):
        raise DataSourceError(f"{split} has {len(pixels)} images but {len(labels)} labels")
    if len(labels) and (int(np.min(labels)) < 0 or int(np.max(labels)) >= task.n_classes):
        raise DataSourceError(
            f"{split} labels must be class indices 0-{task.n_classes - 1} "
            f"({task.describe()}), got {int(np.min(labels))}-{int(np.max(labels))}"
        )


def _fit(
    train_pixels: np.ndarray,
    train_labels: np.ndarray,
    val_pixels: np.ndarray,
    val_labels: np.ndarray,
    settings: TrainSettings,
    params: dict[str, Any],
    device: DeviceInfo,
    callbacks: Sequence[keras.callbacks.Callback],
    verbose: int | str,
    task: ImageTask,
) -> TrainResult:
    """Build, compile and fit inside whatever distribution scope ``train`` opened: variables
    created here are laid out (replicated) on the mesh and every batch is sharded over it."""
    arch = architecture(settings)
    keras.mixed_precision.set_dtype_policy(params["dtype_policy"])
    try:
        model = build_cnn(task, arch)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    trainer = model
    params["augment"] = augments(settings, task)
    if params["augment"]:
        trainer = keras.Sequential(
            [keras.Input(task.input_shape), augmenter(settings.seed, task.digit_like), model],
            name="trainer",
        )
    # Cosine decay to 5 % of the start rate over the planned epochs: the last epochs refine.
    schedule = keras.optimizers.schedules.CosineDecay(
        settings.learning_rate, decay_steps=settings.epochs * params["steps_per_epoch"], alpha=0.05
    )
    trainer.compile(
        optimizer=keras.optimizers.Adam(learning_rate=schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        steps_per_execution=params["steps_per_execution"],
        jit_compile=params["jit_compile"],
    )
    timer = EpochTimer()
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=settings.patience, restore_best_weights=True
    )
    history = trainer.fit(
        to_model_input(train_pixels),
        train_labels,
        validation_data=(to_model_input(val_pixels), val_labels),
        epochs=settings.epochs,
        batch_size=params["batch_size"],
        shuffle=True,
        callbacks=[timer, stop, keras.callbacks.TerminateOnNaN(), *callbacks],
        verbose=verbose,
    )
    if any(math.isnan(v) for v in history.history.get("loss", [])):
        raise TrainingError(
            "training diverged (NaN loss); lower the learning rate (--learning-rate)"
        )
    params["best_epoch"] = int(np.argmin(history.history["val_loss"])) + 1
    if params["dtype_policy"] != "float32":
        model = float32_copy(model, arch, task)
    return TrainResult(model, history.history, timer.seconds, device, params)
