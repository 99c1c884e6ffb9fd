"""The explanation-quality record: the names the run logs and the numbers the policy and the
card read come from one place. Fast: no model."""

from __future__ import annotations

from clearsight.choices import GRAD_CAM, INTEGRATED_GRADIENTS
from clearsight.quality_metrics import (
    COMPLETENESS_GAP_MEDIAN,
    RANDOM,
    QualityMetrics,
    deletion_auc,
    metric_name,
)
from clearsight.reporting.model_card import explanation_section
from clearsight.reporting.retrain_summary import HEADLINE_METRICS

QUALITY = QualityMetrics(
    {
        INTEGRATED_GRADIENTS: {COMPLETENESS_GAP_MEDIAN: 0.01, deletion_auc("zero"): 0.2},
        RANDOM: {deletion_auc("zero"): 0.5},
    },
    n_images=16,
)


def test_flat_names_are_what_mlflow_has_always_shown() -> None:
    assert QUALITY.flat() == {
        "explain_integrated_gradients_completeness_gap_median": 0.01,
        "explain_integrated_gradients_deletion_auc_zero": 0.2,
        "explain_random_deletion_auc_zero": 0.5,
        "explain_n_images": 16.0,
    }
    assert metric_name(INTEGRATED_GRADIENTS, COMPLETENESS_GAP_MEDIAN) in HEADLINE_METRICS


def test_readers_get_numbers_or_none() -> None:
    assert QUALITY.value(INTEGRATED_GRADIENTS, COMPLETENESS_GAP_MEDIAN) == 0.01
    assert QUALITY.value(RANDOM, deletion_auc("zero")) == 0.5
    assert QUALITY.value(GRAD_CAM, COMPLETENESS_GAP_MEDIAN) is None
    assert QUALITY.value(INTEGRATED_GRADIENTS, deletion_auc("blur")) is None


def test_the_model_card_reads_the_record() -> None:
    lines = explanation_section(QUALITY)
    assert any("16 fixed holdout images" in line for line in lines)
    rows = [line for line in lines if line.startswith(f"| {INTEGRATED_GRADIENTS} |")]
    assert rows and "0.01" in rows[0] and "0.2" in rows[0]
    assert any(line.startswith(f"| {RANDOM} |") for line in lines)
    assert not any(line.startswith(f"| {GRAD_CAM} |") for line in lines)
