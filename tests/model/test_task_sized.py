"""The CNN is sized from the task: 8x8 grey and 32x32 colour build and train without hand
edits, the digits keep the seed's exact model, and data of the wrong shape is refused in one
line before anything is built."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clearsight.config import TrainSettings
from clearsight.data.class_folders import colour_shapes
from clearsight.errors import DataSourceError
from clearsight.model.cnn import build_cnn, model_task_shape
from clearsight.model.evaluation import evaluate
from clearsight.model.fitting import augments, train
from clearsight.task import DIGITS, ImageTask

SMALL = ImageTask(8, 8, 1, DIGITS.class_names, digit_like=True)
COLOUR = ImageTask(32, 32, 3, ("circle", "square", "triangle"), digit_like=False)
TINY_FIT = TrainSettings(epochs=1, batch_size=32, conv1_filters=4, conv2_filters=8)


def test_digits_keep_the_seed_model() -> None:
    model = build_cnn()
    assert model.count_params() == 34_826
    assert model_task_shape(model) == ((28, 28, 1), 10)
    assert model.get_layer("flatten").output.shape[-1] == 5 * 5 * 64


@pytest.mark.parametrize("task", [SMALL, COLOUR, ImageTask(1, 5, 1, ("a", "b"), False)])
def test_any_shape_builds_for_its_classes(task: ImageTask) -> None:
    model = build_cnn(task)
    assert model_task_shape(model) == (task.input_shape, task.n_classes)
    for layer in ("conv1", "pool1", "conv2", "pool2", "logits"):
        model.get_layer(layer)  # explanations and activation maps refer to these names


def small_digits(digits: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = digits
    small = np.stack(
        [np.asarray(Image.fromarray(i).resize((8, 8), Image.BILINEAR)) for i in images]
    )
    return small, labels


def test_8x8_grey_trains_and_scores(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = small_digits(digits)
    result = train(images, labels, images[:50], labels[:50], TINY_FIT, verbose=0, task=SMALL)
    assert model_task_shape(result.model) == ((8, 8, 1), 10)
    assert result.fit_params["augment"] is True  # digit-like: augmented by default
    evaluation = evaluate(result.model, images[:50], labels[:50])
    assert evaluation.n_classes == 10 and evaluation.confusion.shape == (10, 10)


def test_32x32_colour_trains_and_scores() -> None:
    data = colour_shapes(10, size=32, seed=1)
    pixels = data.pixels()
    assert pixels.shape[1:] == (32, 32, 3)
    result = train(pixels, data.labels, pixels, data.labels, TINY_FIT, verbose=0, task=COLOUR)
    assert model_task_shape(result.model) == ((32, 32, 3), 3)
    assert result.fit_params["augment"] is False  # not digit-like: no guessed invariances
    evaluation = evaluate(result.model, pixels, data.labels)
    assert evaluation.n_classes == 3
    assert set(evaluation.metrics()) >= {"holdout_recall_0", "holdout_recall_2"}
    assert "holdout_recall_3" not in evaluation.metrics()


def test_augmentation_follows_the_setting_then_the_task() -> None:
    assert augments(TrainSettings(), DIGITS) and not augments(TrainSettings(), COLOUR)
    assert augments(TrainSettings(augment=True), COLOUR)
    assert not augments(TrainSettings(augment=False), DIGITS)


def test_wrong_shape_is_one_clear_line(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    with pytest.raises(
        DataSourceError, match=r"training images are 28x28 but the model is for 8x8 grey"
    ) as err:
        train(images, labels, images, labels, TINY_FIT, verbose=0, task=SMALL)
    assert "\n" not in str(err.value)


def test_labels_outside_the_classes_are_refused() -> None:
    data = colour_shapes(4, size=32, seed=2)
    task = COLOUR.with_classes(("circle", "square"))
    with pytest.raises(DataSourceError, match=r"class indices 0-1"):
        train(
            data.pixels(), data.labels, data.pixels(), data.labels, TINY_FIT, verbose=0, task=task
        )


def test_a_small_dataset_gets_enough_updates_per_epoch() -> None:
    """The default batch (256) is for the 48,000 digits; 560 colour images would get 3 steps an
    epoch (measured: 0.40 accuracy on unseen shapes after 15 epochs, 0.95 with the smaller
    batch), so the batch shrinks to give MIN_STEPS_PER_EPOCH steps, never below 16 images."""
    from clearsight.model.fitting import MIN_STEPS_PER_EPOCH, effective_batch_size

    assert effective_batch_size(256, 3_500) == 256  # the embedded digits: unchanged
    assert effective_batch_size(256, 48_000) == 256
    small = effective_batch_size(256, 560)
    assert small == 47 and -(-560 // small) >= MIN_STEPS_PER_EPOCH
    assert effective_batch_size(256, 100) == 16
    assert effective_batch_size(8, 100) == 8  # a smaller batch asked for is kept
