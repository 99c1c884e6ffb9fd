"""What a model is about: image shape, channels and class names, carried from data to service.

The embedded MNIST digits are only the default (``DIGITS``). A dataset decides its task (the
folder source infers it from the images and the class folders), the CNN is sized from it, the
task travels with the model as MLflow model metadata (``ImageTask.to_metadata``), and the
service, the monitor and the explanations read it back from the model they serve. Numpy and the
standard library only: light enough for every layer.

Stored pixels are uint8 0-255: grey images are (N, H, W), colour images (N, H, W, 3). The model
always sees float32 (N, H, W, C) in 0-1 (``to_model_input``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PIXEL_MAX = 255.0  # stored pixels are 0-255; the model sees 0-1
# The value ranges a caller may declare for its numbers, and the top of each.
SCALE_MAX = {"0-1": 1.0, "0-255": PIXEL_MAX}
# PIL modes with more than 8 bits per channel (I, I;16, F, ...): no agreed mapping to 0-255
# (PIL's own conversion clips everything above 255 to white), so training and serving refuse them.
WIDE_MODES = ("I", "F")
# The key under which the task is stored in an MLflow model's metadata (the MLmodel file).
METADATA_KEY = "clearsight_task"


@dataclass(frozen=True)
class ImageTask:
    """The shape of one image classification problem.

    ``digit_like`` switches on the steps that only make sense for MNIST-style digits (light ink
    on a dark background): the polarity rule of the contract, the polarity repair and the
    MNIST-style crop-and-centre fit for images people send. Other datasets never get them unless
    their settings ask.
    """

    height: int = 28
    width: int = 28
    channels: int = 1
    class_names: tuple[str, ...] = field(default_factory=lambda: tuple(str(d) for d in range(10)))
    digit_like: bool = True

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"image size must be positive, got {self.height}x{self.width}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (colour), got {self.channels}")
        if len(self.class_names) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {self.class_names}")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class names repeat: {self.class_names}")

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """What the model takes per image: (H, W, C)."""
        return (self.height, self.width, self.channels)

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """How one image is stored: (H, W) for grey, (H, W, 3) for colour."""
        if self.channels == 1:
            return (self.height, self.width)
        return (self.height, self.width, self.channels)

    @property
    def mode(self) -> str:
        """PIL's mode for this task's images ('L' or 'RGB')."""
        return "L" if self.channels == 1 else "RGB"

    def describe(self) -> str:
        """One line for logs, cards and error messages, e.g. '28x28 grey, 10 classes'."""
        colour = "grey" if self.channels == 1 else "colour"
        return f"{self.height}x{self.width} {colour}, {self.n_classes} classes"

    def to_metadata(self) -> dict[str, Any]:
        """JSON-safe form, stored in the model's MLflow metadata and in run artifacts."""
        return {
            "height": self.height,
            "width": self.width,
            "channels": self.channels,
            "class_names": list(self.class_names),
            "digit_like": self.digit_like,
        }

    @classmethod
    def from_metadata(cls, body: Mapping[str, Any]) -> ImageTask:
        """The inverse of ``to_metadata``; a model logged before tasks existed gets ``DIGITS``."""
        return cls(
            height=int(body["height"]),
            width=int(body["width"]),
            channels=int(body["channels"]),
            class_names=tuple(str(name) for name in body["class_names"]),
            digit_like=bool(body.get("digit_like", False)),
        )

    def with_classes(self, class_names: Sequence[str]) -> ImageTask:
        return ImageTask(
            self.height, self.width, self.channels, tuple(class_names), self.digit_like
        )


DIGITS = ImageTask()


def to_model_input(pixels: np.ndarray, scale_max: float = PIXEL_MAX) -> np.ndarray:
    """Images (N, H, W) or (N, H, W, C) in 0..``scale_max`` -> float32 (N, H, W, C) in 0-1.

    The default reads stored pixels (0-255); ``scale_max=1.0`` passes images that are already
    in 0-1 (a request that says so) through with the right dtype and shape.
    """
    x = np.asarray(pixels, dtype=np.float32)
    if scale_max != 1.0:
        x = x / np.float32(scale_max)
    return x[..., None] if x.ndim == 3 else x
