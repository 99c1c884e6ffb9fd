"""A Markdown model card for each run: what the model is for and how far to trust it."""

from __future__ import annotations

from typing import Any

from clearsight.choices import METHOD_NAMES
from clearsight.data import Splits
from clearsight.model.evaluation import Evaluation
from clearsight.quality_metrics import (
    BASELINES,
    COMPLETENESS_GAP_MEDIAN,
    STABILITY_SPEARMAN_MEDIAN,
    QualityMetrics,
    deletion_auc,
    insertion_auc,
    randomization_spearman,
)
from clearsight.task import DIGITS, ImageTask

# What a reader of the card needs per method; the run's quality.md has every number.
CARD_COLUMNS = {
    COMPLETENESS_GAP_MEDIAN: "completeness gap (median)",
    deletion_auc("zero"): "deletion AUC (lower is better)",
    insertion_auc("zero"): "insertion AUC (higher is better)",
    STABILITY_SPEARMAN_MEDIAN: "stability under noise (Spearman)",
    randomization_spearman("conv1"): "sanity: Spearman after randomising to conv1 (near 0 is good)",
}
ORDERINGS = (*METHOD_NAMES, *BASELINES)


def explanation_section(quality: QualityMetrics) -> list[str]:
    """The explanation-quality table of the card: one row per method and baseline ordering."""
    rows = []
    for method in ORDERINGS:
        cells = [quality.value(method, key) for key in CARD_COLUMNS]
        if any(cell is not None for cell in cells):
            shown = ["" if cell is None else f"{cell:.4g}" for cell in cells]
            rows.append(f"| {method} | " + " | ".join(shown) + " |")
    n = quality.n_images
    return [
        "## Explanation quality",
        f"Measured on {n} fixed holdout images (`explanations/quality.md` has every number; "
        "deletion and insertion replace pixels with black, in the order each map ranks them).",
        "",
        "| method | " + " | ".join(CARD_COLUMNS.values()) + " |",
        "|---|" + "---|" * len(CARD_COLUMNS),
        *rows,
    ]


def task_section(task: ImageTask) -> list[str]:
    """What goes in and what comes out: the shape a caller must send and the class names."""
    h, w, c = task.input_shape
    return [
        "## Task",
        f"- input: float32 `[-1, {h}, {w}, {c}]` ({task.describe()}), pixels scaled to 0-1",
        f"- classes ({task.n_classes}, by output index): "
        + ", ".join(f"{i} `{name}`" for i, name in enumerate(task.class_names)),
        f"- digit rules (polarity, MNIST-style fit): {'on' if task.digit_like else 'off'}",
    ]


def use_sections(task: ImageTask) -> list[str]:
    """Intended use and its limits: the digits' words for the digits, plain facts otherwise."""
    if task == DIGITS:
        return [
            "## Intended use",
            "Classifies 28x28 grayscale images of single handwritten digits (light ink on a "
            "dark background, MNIST-normalised) into 0-9, with per-pixel explanations of each "
            "decision.",
            "",
            "## Not intended for",
            "Other image kinds, multi-digit or rotated inputs, dark-on-light images without "
            "inversion, or any decision about a person without human review.",
        ]
    return [
        "## Intended use",
        f"Classifies {task.height}x{task.width} {'grey' if task.channels == 1 else 'colour'} "
        f"images like the ones it was trained on into its {task.n_classes} classes (under "
        "Task), with per-pixel explanations of each decision.",
        "",
        "## Not intended for",
        "Images unlike the training data (other sources, sizes or classes: an image is always "
        "given one of these classes), or any decision about a person without human review.",
    ]


def render_model_card(
    *,
    name: str,
    run_id: str,
    splits: Splits,
    evaluation: Evaluation,
    params: dict[str, Any],
    tags: dict[str, str],
    explanation_quality: QualityMetrics | None = None,
    task: ImageTask = DIGITS,
) -> str:
    recalls = " | ".join(f"{r:.3f}" for r in evaluation.per_class_recall)
    same = task.n_classes == evaluation.n_classes
    names = list(task.class_names) if same else [str(c) for c in evaluation.classes]
    lines = [
        f"# Model card: {name}",
        "",
        f"MLflow run `{run_id}`, Keras backend `{tags.get('keras_backend')}` on "
        f"{tags.get('device')}, code `{tags.get('git_commit', 'unknown')[:12]}`"
        f"{' (uncommitted changes)' if tags.get('git_dirty') == 'true' else ''}.",
        "",
        *task_section(task),
        "",
        *use_sections(task),
        "",
        "## Data",
        "| split | images | sha256 | origin |",
        "|---|---|---|---|",
        *(f"| {n} | {len(d)} | `{d.digest[:16]}` | {d.origin} |" for n, d in splits.items()),
        "",
        f"The holdout is frozen{' (reused from an earlier run)' if splits.holdout_frozen else ''}"
        " and never enters training; the data passed the Great Expectations contract "
        f"(`{tags.get('data_contract_hash', '')[:16]}`).",
        "",
        "## Holdout metrics",
        f"- accuracy **{evaluation.accuracy:.4f}**, macro F1 {evaluation.macro_f1:.4f}, "
        f"log-loss {evaluation.log_loss:.4f}",
        "",
        "| class | " + " | ".join(str(c) for c in names) + " |",
        "|---|" + "---|" * evaluation.n_classes,
        f"| recall | {recalls} |",
        "",
        "## Training",
        *(f"- {k}: `{v}`" for k, v in sorted(params.items())),
    ]
    if explanation_quality is not None:
        lines += ["", *explanation_section(explanation_quality)]
    trained_on = (
        "- Trained on a few thousand MNIST digits: handwriting styles outside MNIST may fail."
        if task == DIGITS
        else f"- Trained on {len(splits.train)} images: images unlike them may fail."
    )
    lines += [
        "",
        "## Limits",
        trained_on,
        "- Probabilities are not calibrated guarantees; check the explanation's completeness "
        "gap and the deletion curve before trusting a heatmap.",
    ]
    return "\n".join(lines) + "\n"
