"""The default task's constants (28x28 grey digits, 10 classes), kept for code not yet task-aware.

New code takes an ``clearsight.task.ImageTask`` (from the dataset or the served model) instead
of these; they are ``task.DIGITS`` spelled as module constants.
"""

from __future__ import annotations

from clearsight.task import DIGITS, PIXEL_MAX, SCALE_MAX, to_model_input

IMAGE_SIZE = DIGITS.height
INPUT_SHAPE = DIGITS.input_shape
N_CLASSES = DIGITS.n_classes
CLASS_NAMES = list(DIGITS.class_names)

__all__ = ["CLASS_NAMES", "IMAGE_SIZE", "INPUT_SHAPE", "N_CLASSES", "PIXEL_MAX", "SCALE_MAX"]
__all__ += ["to_model_input"]
