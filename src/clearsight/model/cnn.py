"""The CNN: the seed text's architecture by default, with named layers.

The seed (section 5.2) is Conv2D(32, 3x3, relu) -> MaxPool(2) -> Conv2D(64, 3x3, relu) ->
MaxPool(2) -> Flatten -> Dense(10, softmax). Here the last Dense emits logits and a separate
float32 softmax gives probabilities: explanations differentiate the logits (no saturation),
mixed precision keeps the output in float32, and the model still outputs probabilities.
Inputs are float32 (N, 28, 28, 1) with pixels scaled to 0-1 (``digits.to_model_input``).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from clearsight.digits import INPUT_SHAPE, N_CLASSES

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


def build_cnn(arch: Architecture | None = None, name: str = "clearsight_cnn") -> keras.Model:
    """The functional model with layer names that explanations and activation maps refer to."""
    arch = arch or Architecture()
    k = (arch.kernel_size, arch.kernel_size)
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = keras.layers.Conv2D(arch.conv1_filters, k, activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(arch.conv2_filters, k, activation="relu", name=LAST_CONV_LAYER)(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    if arch.conv_dropout:
        x = keras.layers.SpatialDropout2D(arch.conv_dropout, name="conv_dropout")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    if arch.dense_dropout:
        x = keras.layers.Dropout(arch.dense_dropout, name="dropout")(x)
    logits = keras.layers.Dense(N_CLASSES, name=LOGITS_LAYER)(x)
    probabilities = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(
        logits
    )
    return keras.Model(inputs, probabilities, name=name)


def logits_model(model: keras.Model) -> keras.Model:
    """The same weights, ending at the pre-softmax logits (what explanations differentiate)."""
    return keras.Model(model.inputs, model.get_layer(LOGITS_LAYER).output, name="logits")
