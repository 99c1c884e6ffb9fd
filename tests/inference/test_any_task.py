"""Serving a model of any task, without a server: a 16x16 colour model with 3 named classes
and an 8x8 grey one with 4, both tiny and untrained (seeded), in the seed CNN's layer names.

What is checked is what a caller of another dataset meets: the task comes from the model and
its stored metadata, images are decoded to the model's mode and size (and say so), answers
name their classes, the Open Inference Protocol reports the real input shape and refuses
another one with a 400, and the digit-only steps (polarity, the MNIST fit) stay off.
"""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

import keras
import numpy as np
import pytest

from clearsight.errors import ImageError, RequestError
from clearsight.inference import oip
from clearsight.inference.acceptance import Panel, verify
from clearsight.inference.budget import method_units
from clearsight.inference.feedback import FeedbackRequest, check_labels, decode_feedback
from clearsight.inference.images import decode_base64_with_notes, from_array
from clearsight.inference.predictor import Predictor
from clearsight.inference.provenance import Provenance
from clearsight.inference.schemas import PredictRequest, PredictResponse
from clearsight.inference.served_task import served_task, stored_task
from clearsight.model.cnn import Architecture, build_cnn
from clearsight.task import DIGITS, METADATA_KEY, ImageTask

SHAPES = ImageTask(16, 16, 3, ("circle", "square", "triangle"), digit_like=False)
SMALL = ImageTask(8, 8, 1, ("north", "east", "south", "west"), digit_like=False)
PROVENANCE = Provenance(name="shapes", version="3", run_id="run7")


def tiny_cnn(task: ImageTask) -> keras.Model:
    """The seed family with 4 filters, 'same' padding (an 8x8 input keeps a 2x2 map)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(task.input_shape, name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    logits = keras.layers.Dense(task.n_classes, name="logits")(x)
    probabilities = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(
        logits
    )
    return keras.Model(inputs, probabilities, name="tiny")


@pytest.fixture(scope="module")
def colour_model() -> keras.Model:
    return tiny_cnn(SHAPES)


@pytest.fixture(scope="module")
def grey_model() -> keras.Model:
    return tiny_cnn(SMALL)


async def _forward_with(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


def forward_of(model: keras.Model) -> Any:
    async def forward(x: np.ndarray) -> np.ndarray:
        return await _forward_with(model, x)

    return forward


def png(pixels: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def ask(predictor: Predictor, model: keras.Model, body: dict[str, Any]) -> PredictResponse:
    request = PredictRequest.model_validate(body)
    return asyncio.run(predictor.predict(request, forward_of(model)))


def colour_images(n: int = 2) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, 16, 16, 3)).astype(np.uint8)


# -- the task ---------------------------------------------------------------------------------


def test_the_stored_task_names_the_classes_and_the_model_decides_the_shape(colour_model):
    assert served_task(colour_model, SHAPES) == SHAPES
    unnamed = served_task(colour_model)
    assert unnamed.input_shape == (16, 16, 3) and unnamed.class_names == ("0", "1", "2")
    assert not unnamed.digit_like
    # A stored task of another shape does not change what the model takes.
    assert served_task(colour_model, DIGITS).input_shape == (16, 16, 3)


def test_a_digit_shaped_model_without_a_task_is_the_digits() -> None:
    keras.utils.set_random_seed(0)
    model = build_cnn(arch=Architecture(conv1_filters=4, conv2_filters=4), name="tiny_digits")
    assert served_task(model) == DIGITS


def test_the_task_is_read_from_model_metadata() -> None:
    assert stored_task({METADATA_KEY: SHAPES.to_metadata(), "name": "x"}) == SHAPES
    assert stored_task({"name": "x"}) is None  # imported before tasks existed
    assert stored_task({METADATA_KEY: {"height": 8}}) is None  # unreadable: the shapes decide


# -- decoding ---------------------------------------------------------------------------------


def test_an_encoded_image_is_converted_and_resized_to_the_task_and_says_so() -> None:
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :20] = (255, 0, 0)
    decoded = decode_base64_with_notes(png(wide), SHAPES)
    assert decoded.pixels.shape == (16, 16, 3) and decoded.pixels.dtype == np.float32
    assert decoded.pixels[8, 2, 0] == pytest.approx(1.0) and decoded.pixels[8, 2, 1] == 0
    assert decoded.preprocessing == (
        "resized: 40x20 to 16x16 (the model's input), aspect ratio not kept",
    )
    grey = decode_base64_with_notes(png(np.full((16, 16), 200)), SHAPES)
    assert grey.pixels.shape == (16, 16, 3)
    assert grey.preprocessing == ("converted: grey image to colour, as the model's",)


def test_images_with_more_than_8_bits_per_channel_are_refused() -> None:
    """PIL would clip a 16-bit scan to white; the caller hears why instead."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16), 40_000, np.uint16)).save(buffer, format="PNG")
    with pytest.raises(ImageError, match=r"^I;16 pixels \(more than 8 bits per channel\)"):
        decode_base64_with_notes(base64.b64encode(buffer.getvalue()).decode(), SHAPES)


def test_no_digit_steps_for_other_tasks() -> None:
    """A dark shape on white paper stays as it is: no inversion, no crop to the ink."""
    paper = np.full((8, 8), 255, np.uint8)
    paper[2:6, 2:6] = 0
    decoded = decode_base64_with_notes(png(paper), SMALL)
    assert decoded.preprocessing == ()
    np.testing.assert_allclose(decoded.pixels, paper / 255.0)


def test_an_array_of_another_shape_names_the_shape_the_model_takes() -> None:
    assert from_array(colour_images(1)[0].tolist(), "0-255", SHAPES).shape == (16, 16, 3)
    assert from_array(np.zeros((8, 8, 1)), "0-1", SMALL).shape == (8, 8)
    with pytest.raises(ImageError, match=r"expected shape \(16, 16, 3\).*got \(28, 28\)"):
        from_array(np.zeros((28, 28)), "0-1", SHAPES)


# -- answers ----------------------------------------------------------------------------------


def test_answers_carry_class_names_and_the_top_classes(colour_model) -> None:
    predictor = Predictor(colour_model, PROVENANCE, "shapes:v3", task=SHAPES)
    images = colour_images()
    items = [{"kind": "array", "scale": "0-255", "data": images[0].tolist()}]
    items.append({"kind": "base64", "data": png(np.zeros((32, 32, 3)))})
    body = {"images": items, "explain": {"methods": ["saliency"], "targets": "top-k", "k": 2}}
    response = ask(predictor, colour_model, body)
    expected = keras.ops.convert_to_numpy(colour_model(images[:1] / 255.0))[0]
    first, second = response.results
    assert first.status == "ok" and first.preprocessing == []
    np.testing.assert_allclose(first.probabilities, expected, atol=1e-5)
    assert first.class_name == SHAPES.class_names[first.label]
    assert [c.index for c in first.top_classes] == list(np.argsort(-expected))
    assert [c.name for c in first.top_classes] == [
        SHAPES.class_names[i] for i in np.argsort(-expected)
    ]
    assert [e.target_name for e in first.explanations] == [c.name for c in first.top_classes[:2]]
    assert first.explanations[0].shape == [16, 16]
    assert second.preprocessing == [
        "resized: 32x32 to 16x16 (the model's input), aspect ratio not kept"
    ]


def test_classes_the_model_does_not_have_are_a_400(colour_model) -> None:
    predictor = Predictor(colour_model, PROVENANCE, "shapes:v3", task=SHAPES)
    item = {"kind": "base64", "data": png(np.zeros((16, 16, 3)))}
    for explain, field in (
        ({"targets": "top-k", "k": 4}, "explain.k"),
        ({"targets": "explicit", "classes": [0, 3]}, "explain.classes: no class 3"),
    ):
        with pytest.raises(RequestError, match=field) as refused:
            ask(predictor, colour_model, {"images": [item], "explain": explain})
        assert refused.value.status == 400


def test_warm_up_and_metadata_follow_the_task(grey_model) -> None:
    predictor = Predictor(grey_model, PROVENANCE, "small:v3", task=SMALL)
    predictor.warm_up()
    meta = predictor.metadata()
    assert meta.class_names == list(SMALL.class_names)
    assert meta.task == SMALL.to_metadata()
    assert meta.input["shape"] == [8, 8] and meta.input["model_input_shape"] == [8, 8, 1]
    assert "resized (bilinear) to 8x8" in meta.input["preparation"]
    assert "polarity" not in meta.input  # the MNIST inversion is for digits only
    # the default window is a seventh of the side: 1 pixel on 8x8, 8 x 8 windows
    assert meta.explainer.units_per_target["occlusion"] == 0.5 * 64


def test_occlusion_costs_count_windows_on_the_tasks_size() -> None:
    params = {"window": 4, "stride": 2}
    assert method_units("occlusion", params) == 0.5 * 13 * 13
    assert method_units("occlusion", params, size=(16, 32)) == 0.5 * 7 * 15


# -- Open Inference Protocol --------------------------------------------------------------------


def test_oip_metadata_gives_the_real_input_shape() -> None:
    meta = oip.model_metadata("shapes", "3", SHAPES)
    assert meta.inputs[0].shape == [-1, 16, 16, 3]
    assert {t.name: t.shape for t in meta.outputs} == {
        "probabilities": [-1, 3],
        "label": [-1],
        "attribution": [-1, 16, 16],
    }
    assert oip.model_metadata("digits", "1").inputs[0].shape == [-1, 28, 28, 1]


def run_infer(model: keras.Model, task: ImageTask, shape: list[int]) -> dict[str, Any]:
    import json

    request = oip.InferRequest.model_validate(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": shape,
                    "datatype": "FP32",
                    "data": [0.5] * int(np.prod(shape)),
                }
            ]
        }
    )

    async def attribute(x: np.ndarray, method: str) -> np.ndarray:
        raise AssertionError("not asked for")

    body, _ = asyncio.run(
        oip.infer(
            request,
            b"",
            model_name="m",
            model_version="1",
            forward=forward_of(model),
            attribute=attribute,
            task=task,
        )
    )
    return dict(json.loads(body))


def test_oip_takes_the_tasks_shape_and_refuses_another_with_a_400(colour_model, grey_model):
    answer = run_infer(colour_model, SHAPES, [2, 16, 16, 3])
    assert answer["outputs"][0]["shape"] == [2, 3]
    assert run_infer(grey_model, SMALL, [1, 8, 8])["outputs"][0]["shape"] == [1, 4]
    assert run_infer(grey_model, SMALL, [1, 64])["outputs"][0]["shape"] == [1, 4]
    with pytest.raises(RequestError, match=r"expected \[N, 16, 16, 3\] or \[N, 768\]") as wrong:
        run_infer(colour_model, SHAPES, [1, 28, 28, 1])
    assert (wrong.value.status, wrong.value.code) == (400, "invalid_tensor")


# -- feedback and acceptance ----------------------------------------------------------------------


def test_feedback_is_decoded_for_the_task_and_labels_checked_against_it() -> None:
    images = colour_images()
    request = FeedbackRequest.model_validate(
        {
            "images": [{"kind": "array", "scale": "0-255", "data": im.tolist()} for im in images],
            "labels": [0, 2],
            "request_id": "r1",
        }
    )
    pixels = decode_feedback(request, SHAPES)
    assert pixels.dtype == np.uint8 and pixels.shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(pixels, images)
    check_labels([0, 2], SHAPES)
    with pytest.raises(RequestError, match=r"labels.1: no class 3; .* classes 0-2") as wrong:
        check_labels([0, 3], SHAPES)
    assert wrong.value.status == 400


def test_a_panel_of_another_shape_is_refused_with_a_reason(colour_model) -> None:
    panel = Panel(np.zeros((2, 28, 28), np.uint8), np.zeros(2, int), np.zeros((2, 10)))
    verdict = verify(colour_model, panel, max_gap=1.0)
    assert not verdict.passed
    assert "the panel's images are (28, 28, 1), the model takes (16, 16, 3)" in verdict.reason()


def overlay_takes_colour() -> bool:
    """Whether ``render.overlay_png`` draws on an (H, W, 3) image (c-explain adds it)."""
    from clearsight.explain.render import overlay_png

    try:
        overlay_png(np.zeros((4, 4, 3), np.float32), np.ones((4, 4), np.float32))
    except ValueError:
        return False
    return True


def test_overlays_of_a_colour_model_are_drawn_on_the_colour_image(colour_model) -> None:
    if not overlay_takes_colour():
        pytest.skip("render.overlay_png takes (H, W, 3) once c-explain is merged")
    from PIL import Image

    predictor = Predictor(colour_model, PROVENANCE, "shapes:v3", task=SHAPES)
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    body = {
        "images": [{"kind": "array", "scale": "0-255", "data": red.tolist()}],
        "explain": {"methods": ["saliency"], "encodings": ["png_overlay"]},
    }
    (result,) = ask(predictor, colour_model, body).results
    assert result.status == "ok", result.warnings
    overlay = result.explanations[0].png_overlay
    assert overlay is not None
    with Image.open(io.BytesIO(base64.b64decode(overlay))) as image:
        assert image.size == (16 * 8, 16 * 8)  # the colour image, enlarged 8x
