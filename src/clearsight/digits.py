"""What the model is about: 28x28 grayscale digits, light ink on dark, in 10 classes.

The one place for the task's shapes, class names and input scaling. Data readers, the
contract, the CNN, the explanations and the service all import these, so a change of task
(another image size, other classes) is one edit. Numpy only: light enough for every layer.
"""

from __future__ import annotations

import numpy as np

IMAGE_SIZE = 28
INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)
N_CLASSES = 10
CLASS_NAMES = [str(digit) for digit in range(N_CLASSES)]
PIXEL_MAX = 255.0  # stored pixels are 0-255; the model sees 0-1
# The value ranges a caller may declare for its numbers, and the top of each.
SCALE_MAX = {"0-1": 1.0, "0-255": PIXEL_MAX}


def to_model_input(pixels: np.ndarray, scale_max: float = PIXEL_MAX) -> np.ndarray:
    """Images (N, 28, 28[, 1]) in 0..``scale_max`` -> the model's float32 (N, 28, 28, 1) in 0-1.

    The default reads stored pixels (0-255); ``scale_max=1.0`` passes images that are already
    in 0-1 (a request that says so) through with the right dtype and shape.
    """
    x = np.asarray(pixels, dtype=np.float32)
    if scale_max != 1.0:
        x = x / np.float32(scale_max)
    return x[..., None] if x.ndim == 3 else x
