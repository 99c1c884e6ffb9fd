"""Explain one image file: what ``clearsight explain IMAGE.png`` does, as a library call."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from clearsight.data.sources import read_prepared
from clearsight.errors import DataSourceError
from clearsight.explain import explain, get_method
from clearsight.explain.quality import attribution_curves
from clearsight.explain.render import overlay_png
from clearsight.task import DIGITS, ImageTask, to_model_input


@dataclass(frozen=True)
class MethodResult:
    method: str
    overlay: Path
    seconds: float
    completeness_gap: float | None


@dataclass(frozen=True)
class ImageExplanation:
    label: int
    confidence: float
    probabilities: np.ndarray
    rows: list[MethodResult]
    quality: dict[str, float] = field(default_factory=dict)
    preprocessing: tuple[str, ...] = ()  # steps taken on the file, e.g. "inverted: ..."
    class_name: str = ""  # the label's name in the model's task

    @property
    def inverted(self) -> bool:
        """Whether the file was a dark digit on a light background, turned light on dark."""
        return any(step.startswith("inverted") for step in self.preprocessing)


def model_task(model: keras.Model) -> ImageTask:
    """The task a model was built for, read from the model alone (a caller that has the
    registry's task passes it instead): ``DIGITS`` for a 28x28 grey 10-class model, else the
    model's input shape with numbered classes and no digit rules."""
    _, height, width, channels = model.input_shape
    n_classes = int(model.output_shape[-1])
    task = ImageTask(int(height), int(width), int(channels), tuple(map(str, range(n_classes))))
    if task.input_shape == DIGITS.input_shape and n_classes == DIGITS.n_classes:
        return DIGITS
    return ImageTask(task.height, task.width, task.channels, task.class_names, digit_like=False)


def read_for_task(image: Path, task: ImageTask) -> tuple[np.ndarray, tuple[str, ...]]:
    """One file as stored pixels of ``task`` (uint8 (H, W) or (H, W, 3)) and the steps taken.

    Digit-like tasks get the MNIST treatment people's own digits need (polarity to light on
    dark, crop and centre) and then the task's size; any other task gets the file in the
    task's mode (grey or RGB), resized bilinearly if its size differs, saying so.
    """
    from PIL import Image, UnidentifiedImageError

    if task.digit_like and task.channels == 1:
        prepared = read_prepared(image, "fit", normalise_polarity=True)
        pixels, steps = prepared.pixels, prepared.steps
        if pixels.shape == task.stored_shape:
            return pixels, steps
        opened = Image.fromarray(pixels)
    else:
        steps = ()
        try:
            with Image.open(image) as img:
                opened = img.convert(task.mode)
        except FileNotFoundError:
            raise DataSourceError(f"{image}: no such file") from None
        except (UnidentifiedImageError, OSError) as err:
            raise DataSourceError(f"{image}: not a readable image ({err})") from None
    if opened.size != (task.width, task.height):
        note = f"resized: {opened.width}x{opened.height} to {task.width}x{task.height}"
        opened = opened.resize((task.width, task.height), Image.Resampling.BILINEAR)
        steps = (*steps, note)
    return np.asarray(opened, np.uint8), steps


def explain_file(
    model: keras.Model,
    image: Path,
    methods: list[str],
    out_dir: Path,
    task: ImageTask | None = None,
) -> ImageExplanation:
    """Read, bring to the model's shape, predict, explain, write overlays.

    A file is a single image someone made, not training data: for a digit-like model a dark
    digit on a light background is inverted (``read_prepared(..., normalise_polarity=True)``),
    as the service does, and ``preprocessing`` says so; any other model gets the file in its
    own size and mode (``read_for_task``). ``task`` defaults to ``model_task(model)``.
    Overlays are drawn on the image as the model saw it, in colour for colour models.
    """
    specs = [get_method(m) for m in methods]  # an unknown name fails before any work
    task = task or model_task(model)
    pixels, steps = read_for_task(image, task)
    x = to_model_input(pixels[None])
    probabilities = keras.ops.convert_to_numpy(model(x, training=False))[0]
    label = int(np.argmax(probabilities))
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = x[0] if task.channels == 3 else x[0, ..., 0]
    rows, quality = [], {}
    for spec in specs:
        attribution = explain(model, x, spec.name)
        path = out_dir / f"{image.stem}_{spec.name}.png"
        overlay_png(shown, attribution.maps[0], polarity=spec.ranking, path=path)
        gap = attribution.completeness_gap
        rows.append(
            MethodResult(
                spec.name, path, attribution.elapsed_s, None if gap is None else float(gap[0])
            )
        )
        curves = attribution_curves(model, x, attribution, spec.ranking, fill="zero")
        quality[f"{spec.name}_deletion_auc"] = float(curves.deletion_auc[0])
        quality[f"{spec.name}_insertion_auc"] = float(curves.insertion_auc[0])
    name = task.class_names[label] if label < task.n_classes else str(label)
    return ImageExplanation(
        label, float(probabilities[label]), probabilities, rows, quality, steps, name
    )
