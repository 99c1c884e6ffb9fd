"""A Markdown model card for each run: what the model is for and how far to trust it."""

from __future__ import annotations

from typing import Any

from clearsight.choices import METHOD_NAMES
from clearsight.data import Splits
from clearsight.digits import N_CLASSES
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
        f"Measured on {n} fixed holdout digits (`explanations/quality.md` has every number; "
        "deletion and insertion replace pixels with black, in the order each map ranks them).",
        "",
        "| method | " + " | ".join(CARD_COLUMNS.values()) + " |",
        "|---|" + "---|" * len(CARD_COLUMNS),
        *rows,
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
) -> str:
    recalls = " | ".join(f"{r:.3f}" for r in evaluation.per_class_recall)
    lines = [
        f"# Model card: {name}",
        "",
        f"MLflow run `{run_id}`, Keras backend `{tags.get('keras_backend')}` on "
        f"{tags.get('device')}, code `{tags.get('git_commit', 'unknown')[:12]}`"
        f"{' (uncommitted changes)' if tags.get('git_dirty') == 'true' else ''}.",
        "",
        "## Intended use",
        "Classifies 28x28 grayscale images of single handwritten digits (light ink on a dark "
        "background, MNIST-normalised) into 0-9, with per-pixel explanations of each decision.",
        "",
        "## Not intended for",
        "Other image kinds, multi-digit or rotated inputs, dark-on-light images without "
        "inversion, or any decision about a person without human review.",
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
        "| class | " + " | ".join(str(c) for c in range(N_CLASSES)) + " |",
        "|---|" + "---|" * N_CLASSES,
        f"| recall | {recalls} |",
        "",
        "## Training",
        *(f"- {k}: `{v}`" for k, v in sorted(params.items())),
    ]
    if explanation_quality is not None:
        lines += ["", *explanation_section(explanation_quality)]
    lines += [
        "",
        "## Limits",
        "- Trained on a few thousand MNIST digits: handwriting styles outside MNIST may fail.",
        "- Probabilities are not calibrated guarantees; check the explanation's completeness "
        "gap and the deletion curve before trusting a heatmap.",
    ]
    return "\n".join(lines) + "\n"
