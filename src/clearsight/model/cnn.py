"""The CNN: the seed text's architecture, sized from the task's image shape and classes.

The seed (section 5.2) is Conv2D(32, 3x3, relu) -> MaxPool(2) -> Conv2D(64, 3x3, relu) ->
MaxPool(2) -> Flatten -> Dense(10, softmax). Here the last Dense emits logits and a separate
float32 softmax gives probabilities: explanations differentiate the logits (no saturation),
mixed precision keeps the output in float32, and the model still outputs probabilities.
Inputs are float32 (N, H, W, C) with pixels scaled to 0-1 (``task.to_model_input``).

The same family serves every dataset (``ImageTask``): the input is the task's (H, W, C), the
last Dense has one unit per class, and two rules keep small images trainable without hand
edits. A convolution pads "valid" (the seed's choice, the digits' exact model) while the side
is at least twice the kernel, and "same" below that, so an 8x8 image is not convolved away; a
pooling halves only a side of at least 2. For 28x28 digits both rules give the seed's model
(34,826 parameters), unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from clearsight.task import DIGITS, ImageTask

LOGITS_LAYER = "logits"
LAST_CONV_LAYER = "conv2"


@dataclass(frozen=True)
class Architecture:
    """What ``build_cnn`` may vary; the defaults are the seed text's model."""

    conv1_filters: int = 32
    conv2_filters: int = 64
    kernel_size: int = 3
    dense_dropout: float = 0.0
    conv_dropout: float = 0.0


def conv_padding(height: int, width: int, kernel: int) -> str:
    """'valid' while both sides keep room for the kernel twice over, else 'same'."""
    return "valid" if min(height, width) >= 2 * kernel else "same"


def pool_size(height: int, width: int) -> tuple[int, int]:
    """Halve each side that has at least 2 pixels; a side of 1 stays 1."""
    return (2 if height >= 2 else 1, 2 if width >= 2 else 1)


def _conv_pool(
    x: keras.KerasTensor, filters: int, kernel: int, side: tuple[int, int], index: int
) -> tuple[keras.KerasTensor, tuple[int, int]]:
    """One conv-pool stage; returns the output and its (height, width)."""
    height, width = side
    padding = conv_padding(height, width, kernel)
    name = LAST_CONV_LAYER if index == 2 else f"conv{index}"
    x = keras.layers.Conv2D(filters, kernel, padding=padding, activation="relu", name=name)(x)
    if padding == "valid":
        height, width = height - kernel + 1, width - kernel + 1
    size = pool_size(height, width)
    # Always a named layer (explanations and activation maps refer to pool1/pool2); (1, 1)
    # passes a 1-pixel side through unchanged.
    x = keras.layers.MaxPooling2D(size, name=f"pool{index}")(x)
    return x, (height // size[0], width // size[1])


def build_cnn(
    task: ImageTask = DIGITS, arch: Architecture | None = None, name: str = "clearsight_cnn"
) -> keras.Model:
    """The functional model for ``task``, with the layer names explanations refer to."""
    arch = arch or Architecture()
    k = arch.kernel_size
    inputs = keras.Input(task.input_shape, name="image")
    x, side = _conv_pool(inputs, arch.conv1_filters, k, (task.height, task.width), 1)
    x, side = _conv_pool(x, arch.conv2_filters, k, side, 2)
    if arch.conv_dropout:
        x = keras.layers.SpatialDropout2D(arch.conv_dropout, name="conv_dropout")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    if arch.dense_dropout:
        x = keras.layers.Dropout(arch.dense_dropout, name="dropout")(x)
    logits = keras.layers.Dense(task.n_classes, name=LOGITS_LAYER)(x)
    probabilities = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(
        logits
    )
    return keras.Model(inputs, probabilities, name=name)


def model_task_shape(model: keras.Model) -> tuple[tuple[int, ...], int]:
    """(input (H, W, C), number of classes) of a built model: what it was sized for."""
    input_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    return input_shape, int(model.outputs[0].shape[-1])


def logits_model(model: keras.Model) -> keras.Model:
    """The same weights, ending at the pre-softmax logits (what explanations differentiate)."""
    return keras.Model(model.inputs, model.get_layer(LOGITS_LAYER).output, name="logits")
