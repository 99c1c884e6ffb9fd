"""The run's files speak the task's language: class names in the figures, the per-class table
and the model card, colour mistakes drawn in colour, and the task itself as task.json."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from clearsight.data import Dataset, Splits
from clearsight.model.cnn import Architecture, build_cnn
from clearsight.model.evaluation import Evaluation
from clearsight.reporting import figures
from clearsight.reporting.model_card import render_model_card
from clearsight.reporting.run_artifacts import write_evaluation_artifacts
from clearsight.task import DIGITS, ImageTask

NAMES = ("circle", "square, filled", "triangle")
SHAPES = ImageTask(16, 16, 3, NAMES, digit_like=False)


def shapes_evaluation() -> tuple[Evaluation, np.ndarray]:
    """Six colour images, two per class; image 0 (a circle) is taken for a square."""
    labels = np.repeat(np.arange(3), 2)
    predictions = labels.copy()
    predictions[0] = 1
    probabilities = np.full((6, 3), 0.1)
    probabilities[np.arange(6), predictions] = 0.8
    pixels = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    return Evaluation(labels, probabilities), pixels


def test_figures_and_table_name_the_classes(tmp_path: Path) -> None:
    evaluation, pixels = shapes_evaluation()
    model = build_cnn(SHAPES, Architecture(conv1_filters=2, conv2_filters=2))
    write_evaluation_artifacts(
        model, evaluation, {"loss": [1.0], "accuracy": [0.5]}, pixels, tmp_path, SHAPES
    )
    with (tmp_path / "evaluation/per_class_metrics.csv").open() as table:
        rows = list(csv.DictReader(table))
    assert [r["name"] for r in rows] == list(NAMES)  # the comma survives csv quoting
    assert [r["class"] for r in rows] == ["0", "1", "2"]
    assert rows[0]["recall"] == "0.5000" and rows[0]["support"] == "2"
    assert json.loads((tmp_path / "task.json").read_text()) == SHAPES.to_metadata()
    assert (tmp_path / "evaluation/confusion_matrix.png").stat().st_size > 0

    gallery = figures.misclassified_gallery(pixels, evaluation, class_names=NAMES)
    titles = [ax.get_title() for ax in gallery.axes if ax.get_title()]
    assert titles == ["true circle -> square, filled (80%)"]
    assert gallery.axes[0].images[0].get_array().shape == (16, 16, 3)  # drawn in colour
    confusion = figures.confusion_matrix_figure(evaluation, NAMES)
    assert [t.get_text() for t in confusion.axes[0].get_xticklabels()] == list(NAMES)


def splits() -> Splits:
    data = Dataset(np.zeros((4, 16, 16, 3), np.uint8), np.array([0, 1, 2, 0]), "shapes", NAMES)
    return Splits(train=data, validation=data, holdout=data, holdout_frozen=False)


def test_model_card_states_the_task_and_names_the_classes() -> None:
    evaluation, _ = shapes_evaluation()
    card = render_model_card(
        name="shapes",
        run_id="r1",
        splits=splits(),
        evaluation=evaluation,
        params={},
        tags={},
        task=SHAPES,
    )
    assert "input: float32 `[-1, 16, 16, 3]` (16x16 colour, 3 classes)" in card
    assert "| class | circle | square, filled | triangle |" in card
    assert "handwritten" not in card and "MNIST digits" not in card
    assert "classes (3, by output index): 0 `circle`, 1 `square, filled`, 2 `triangle`" in card
    digits_card = render_model_card(
        name="digits",
        run_id="r1",
        splits=splits(),
        evaluation=Evaluation(np.arange(10), np.eye(10)),
        params={},
        tags={},
    )
    assert "handwritten digits" in digits_card and "| class | 0 | 1 |" in digits_card
    assert DIGITS.describe() in digits_card
