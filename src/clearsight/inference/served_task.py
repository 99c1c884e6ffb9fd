"""The task a served model answers: its input shape and class names, decided from the model.

The model's own input and output shapes are authoritative (they are what a request must fit);
the task stored with it (MLflow model metadata, copied into the BentoML model's metadata when
the champion is imported) supplies what the shapes cannot say: the class names and whether the
images are MNIST-like digits. A model stored before tasks existed, or one whose stored task
disagrees with its shapes, still serves: a 28x28 grey model with 10 outputs is the digits'
task, any other gets the class names '0'..'n-1' and no digit-only steps.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from clearsight.task import DIGITS, METADATA_KEY, ImageTask

logger = logging.getLogger(__name__)


def model_shapes(model: Any) -> tuple[tuple[int, int, int], int]:
    """((H, W, C), number of classes) of a Keras image classifier; ValueError if it is not one."""
    inputs = tuple(model.input_shape)
    outputs = tuple(model.output_shape)
    if len(inputs) != 4 or any(not isinstance(d, int) for d in inputs[1:]):
        raise ValueError(f"the model takes {inputs}, not images (N, H, W, C)")
    if len(outputs) != 2 or not isinstance(outputs[1], int):
        raise ValueError(f"the model answers {outputs}, not class scores (N, classes)")
    height, width, channels = (int(d) for d in inputs[1:])
    return (height, width, channels), int(outputs[1])


def stored_task(metadata: Mapping[str, Any]) -> ImageTask | None:
    """The task in a model's metadata (BentoML or MLflow), None when there is none or it does
    not parse (an old or hand-made model: ``served_task`` then decides from the shapes)."""
    body = metadata.get(METADATA_KEY)
    if not isinstance(body, Mapping):
        return None
    try:
        return ImageTask.from_metadata(body)
    except (KeyError, TypeError, ValueError) as err:
        logger.warning("the model's stored task is unreadable (%s); using its shapes", err)
        return None


def served_task(model: Any, stored: ImageTask | None = None) -> ImageTask:
    """The task to serve ``model`` with: its shapes, ``stored``'s names when they fit."""
    (height, width, channels), n_classes = model_shapes(model)
    if channels not in (1, 3):
        raise ValueError(f"the model takes {channels} channels; clearsight serves 1 or 3")
    if stored is not None:
        if stored.input_shape == (height, width, channels) and stored.n_classes == n_classes:
            return stored
        logger.warning(
            "the stored task (%s) does not fit the model (%dx%dx%d, %d classes); serving the "
            "model's shapes",
            stored.describe(),
            height,
            width,
            channels,
            n_classes,
        )
        names = stored.class_names if stored.n_classes == n_classes else None
        digit_like = stored.digit_like and channels == 1
    else:
        names, digit_like = None, False
    if names is None and (height, width, channels, n_classes) == (*DIGITS.input_shape, 10):
        return DIGITS
    return ImageTask(
        height=height,
        width=width,
        channels=channels,
        class_names=names or tuple(str(i) for i in range(n_classes)),
        digit_like=digit_like,
    )
