"""The champion/challenger policy (``promotion.decide``) on constructed holdout outcomes.

No MLflow, no training: each candidate is an ``Evaluation`` built from chosen labels and
predictions (20 images per class, so one wrong image moves accuracy by 0.005 and a class's
recall by 0.05), plus the latency, size and explanation numbers the policy reads.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest

from clearsight.choices import INTEGRATED_GRADIENTS as IG
from clearsight.config import PromotionSettings
from clearsight.digits import N_CLASSES
from clearsight.model.evaluation import Evaluation, mcnemar_p_value
from clearsight.promotion import Candidate, Check, Decision, decide
from clearsight.quality_metrics import (
    COMPLETENESS_GAP_MEDIAN,
    RANDOM,
    QualityMetrics,
    deletion_auc,
    metric_name,
)

PER_CLASS = 20
LABELS = np.repeat(np.arange(N_CLASSES), PER_CLASS)  # 200 images, every class present
MODEL = "digits"
DELETION = deletion_auc("zero")


def quality(
    gap: float | None = 0.01, deletion: float | None = 0.2, random: float | None = 0.5
) -> QualityMetrics:
    """The integrated-gradients numbers the policy reads (None: not measured)."""
    ig = {COMPLETENESS_GAP_MEDIAN: gap, DELETION: deletion}
    sections = {IG: {k: v for k, v in ig.items() if v is not None}}
    if random is not None:
        sections[RANDOM] = {DELETION: random}
    return QualityMetrics(sections=sections, n_images=32)


POLICY = PromotionSettings(
    min_accuracy_gain=0.01,
    min_class_recall=0.9,
    max_latency_p95_ms=50.0,
    max_model_mb=5.0,
    max_completeness_gap=0.05,
)


def first_of_class(cls: int, n: int = 1) -> list[int]:
    """Indices of the first ``n`` images of class ``cls`` in ``LABELS``."""
    return list(range(cls * PER_CLASS, cls * PER_CLASS + n))


def evaluation(wrong: Iterable[int] = ()) -> Evaluation:
    """Every image right except those at ``wrong`` (predicted as the next class)."""
    predictions = LABELS.copy()
    for i in wrong:
        predictions[i] = (LABELS[i] + 1) % N_CLASSES
    probabilities = np.full((len(LABELS), N_CLASSES), 0.02)
    probabilities[np.arange(len(LABELS)), predictions] = 0.82  # rows sum to 1
    return Evaluation(labels=LABELS, probabilities=probabilities)


def candidate(
    version: str = "2",
    wrong: Iterable[int] = (),
    latency: float = 5.0,
    size: float = 1.0,
    explanation: QualityMetrics | None = None,
) -> Candidate:
    return Candidate(
        version=version,
        evaluation=evaluation(wrong),
        latency_p95_ms=latency,
        size_mb=size,
        explanation=quality() if explanation is None else explanation,
    )


# The champion misses one image of every class: accuracy 0.95, every recall 0.95.
CHAMPION_WRONG = [first_of_class(c)[0] for c in range(N_CLASSES)]


def champion() -> Candidate:
    return candidate(version="1", wrong=CHAMPION_WRONG)


def check(decision: Decision, name: str) -> Check:
    (found,) = [c for c in decision.checks if c.name == name]
    return found


def failed(decision: Decision) -> list[str]:
    return [c.name for c in decision.checks if not c.passed]


# -- the verdict ----------------------------------------------------------------------------


def test_bootstrap_without_champion_promotes_a_model_that_passes_the_absolute_checks():
    decision = decide(candidate(version="1", wrong=[0]), None, POLICY, MODEL)
    assert decision.promoted
    assert decision.champion_version is None
    assert decision.reason == "First model: it becomes the champion."
    gain = check(decision, "accuracy gain")
    assert gain.passed and gain.threshold is None and gain.detail == "no champion: bootstrap"
    assert gain.observed == pytest.approx(0.995)
    assert decision.champion_metrics == {}


def test_bootstrap_still_applies_the_absolute_checks():
    decision = decide(candidate(version="1", latency=80.0), None, POLICY, MODEL)
    assert not decision.promoted
    assert failed(decision) == ["latency p95 (ms)"]


def test_every_check_is_recorded_passed_or_not():
    decision = decide(candidate(), champion(), POLICY, MODEL)
    assert [c.name for c in decision.checks] == [
        "min class recall",
        "latency p95 (ms)",
        "model size (MB)",
        "IG completeness gap (median)",
        "IG deletion AUC < random",
        "accuracy gain",
    ]


@pytest.mark.parametrize("min_gain", [0.0, 0.01])
def test_a_tie_keeps_the_champion_even_when_no_gain_is_required(min_gain):
    policy = POLICY.model_copy(update={"min_accuracy_gain": min_gain})
    decision = decide(candidate(wrong=CHAMPION_WRONG), champion(), policy, MODEL)
    assert not decision.promoted
    assert failed(decision) == ["accuracy gain"]
    assert check(decision, "accuracy gain").observed == 0.0
    assert "McNemar p=1" in check(decision, "accuracy gain").detail


def test_gain_below_the_minimum_keeps_the_champion():
    # 9 wrong instead of 10: +0.005, half the required 0.01.
    decision = decide(candidate(wrong=CHAMPION_WRONG[:9]), champion(), POLICY, MODEL)
    gain = check(decision, "accuracy gain")
    assert not decision.promoted
    assert gain.observed == pytest.approx(0.005)
    assert gain.threshold == POLICY.min_accuracy_gain
    assert failed(decision) == ["accuracy gain"]


def test_gain_above_the_minimum_promotes_and_records_both_sides():
    # 6 wrong instead of 10: +0.02.
    decision = decide(candidate(wrong=CHAMPION_WRONG[:6]), champion(), POLICY, MODEL)
    assert decision.promoted
    assert decision.reason == "Passed every check: the challenger becomes the champion."
    assert check(decision, "accuracy gain").observed == pytest.approx(0.02)
    assert check(decision, "accuracy gain").detail.startswith("0.9700 vs 0.9500")
    assert (decision.challenger_version, decision.champion_version) == ("2", "1")
    assert decision.challenger_metrics["holdout_accuracy"] == pytest.approx(0.97)
    assert decision.champion_metrics["holdout_accuracy"] == pytest.approx(0.95)
    assert decision.challenger_metrics["latency_p95_ms"] == 5.0
    assert decision.challenger_metrics["model_mb"] == 1.0
    assert decision.challenger_metrics[metric_name(IG, COMPLETENESS_GAP_MEDIAN)] == 0.01


def test_a_worse_challenger_is_refused():
    decision = decide(candidate(wrong=[*CHAMPION_WRONG, 1]), champion(), POLICY, MODEL)
    assert not decision.promoted
    assert check(decision, "accuracy gain").observed == pytest.approx(-0.005)


# -- the absolute checks ------------------------------------------------------------------


def test_a_class_recall_below_the_floor_fails_and_names_the_class():
    decision = decide(candidate(wrong=first_of_class(7, n=3)), None, POLICY, MODEL)  # 17/20
    recall = check(decision, "min class recall")
    assert not decision.promoted
    assert recall.observed == pytest.approx(0.85)
    assert recall.threshold == 0.9
    assert recall.detail == "weakest class 7"


def test_a_class_recall_at_the_floor_passes():
    decision = decide(candidate(wrong=first_of_class(7, n=2)), None, POLICY, MODEL)  # 18/20
    assert check(decision, "min class recall").passed
    assert decision.promoted


@pytest.mark.parametrize(("latency", "passes"), [(49.0, True), (50.0, True), (50.5, False)])
def test_latency_limit_is_inclusive(latency, passes):
    decision = decide(candidate(latency=latency), None, POLICY, MODEL)
    assert check(decision, "latency p95 (ms)").passed is passes
    assert decision.promoted is passes


@pytest.mark.parametrize(("size", "passes"), [(4.9, True), (5.0, True), (5.2, False)])
def test_model_size_limit_is_inclusive(size, passes):
    decision = decide(candidate(size=size), None, POLICY, MODEL)
    assert check(decision, "model size (MB)").passed is passes
    assert decision.promoted is passes


@pytest.mark.parametrize(("gap", "passes"), [(0.0, True), (0.05, True), (0.3, False)])
def test_integrated_gradients_completeness_gap_limit(gap, passes):
    decision = decide(candidate(explanation=quality(gap=gap)), None, POLICY, MODEL)
    found = check(decision, "IG completeness gap (median)")
    assert (found.passed, found.observed, found.threshold) == (passes, gap, 0.05)
    assert decision.promoted is passes


@pytest.mark.parametrize(
    ("deletion", "random", "passes"), [(0.2, 0.5, True), (0.5, 0.5, False), (0.6, 0.4, False)]
)
def test_integrated_gradients_must_beat_a_random_deletion_order(deletion, random, passes):
    explanation = quality(deletion=deletion, random=random)
    decision = decide(candidate(explanation=explanation), None, POLICY, MODEL)
    found = check(decision, "IG deletion AUC < random")
    assert (found.passed, found.observed, found.threshold) == (passes, deletion, random)
    assert decision.promoted is passes


@pytest.mark.parametrize("explanation", [None, QualityMetrics()], ids=["skipped", "empty"])
def test_without_explanation_numbers_the_explanation_checks_are_skipped(explanation):
    challenger = Candidate("2", evaluation(), 5.0, 1.0, explanation)
    decision = decide(challenger, None, POLICY, MODEL)
    names = {c.name for c in decision.checks}
    assert not names & {"IG completeness gap (median)", "IG deletion AUC < random"}
    assert decision.promoted


def test_deletion_is_not_judged_without_its_random_baseline():
    decision = decide(candidate(explanation=quality(random=None)), None, POLICY, MODEL)
    assert "IG deletion AUC < random" not in {c.name for c in decision.checks}
    assert "IG completeness gap (median)" in {c.name for c in decision.checks}


# -- the reason and the record ------------------------------------------------------------


def test_reason_names_every_failing_check_with_its_numbers_and_no_passing_one():
    challenger = candidate(
        wrong=CHAMPION_WRONG,  # a tie
        latency=120.0,
        explanation=quality(gap=0.25),
    )
    decision = decide(challenger, champion(), POLICY, MODEL)
    assert failed(decision) == ["latency p95 (ms)", "IG completeness gap (median)", "accuracy gain"]
    assert decision.reason == (
        "Kept the champion. Failed: "
        "latency p95 (ms) 120 (limit 50; one image, warm); "
        "IG completeness gap (median) 0.25 (limit 0.05; attributions add up); "
        "accuracy gain 0 (limit 0.01; 0.9500 vs 0.9500, McNemar p=1)"
    )
    for passing in ("min class recall", "model size", "deletion"):
        assert passing not in decision.reason


def test_markdown_shows_every_check_and_the_verdict():
    decision = decide(candidate(size=9.0), champion(), POLICY, MODEL)
    text = decision.to_markdown()
    assert text.startswith("# Promotion decision: digits v2\n")
    assert "Challenger v2 vs champion v1: **kept the champion**." in text
    assert "| model size (MB) | FAIL | 9 | 5 | .keras file |" in text
    assert text.count("| pass |") == len(decision.checks) - 1
    bootstrap = decide(candidate(version="1"), None, POLICY, MODEL).to_markdown()
    assert "(none: bootstrap): **promoted**" in bootstrap


def test_to_dict_keeps_every_check_for_the_record():
    record = decide(candidate(), None, POLICY, MODEL).to_dict()
    assert record["promoted"] is True
    assert record["model"] == MODEL
    assert len(record["checks"]) == 6
    assert set(record["checks"][0]) == {"name", "passed", "observed", "threshold", "detail"}


# -- McNemar ----------------------------------------------------------------------------


def test_mcnemar_p_value_on_a_known_case():
    # The challenger fixes 8 of the champion's mistakes and makes none of its own:
    # exact two-sided binomial p = 2 * 0.5**8 = 0.0078125.
    ch = evaluation(wrong=[])
    champ = evaluation(wrong=first_of_class(3, n=4) + first_of_class(5, n=4))
    assert mcnemar_p_value(ch.correct, champ.correct) == pytest.approx(2 * 0.5**8)
    # 3 discordant pairs one way, 1 the other: P(X<=1) + P(X>=3) of Bin(4, 1/2) = 10/16.
    a = np.array([True, True, True, False, True, False])
    b = np.array([False, False, False, True, True, False])
    assert mcnemar_p_value(a, b) == pytest.approx(0.625)
    assert mcnemar_p_value(b, a) == pytest.approx(0.625)
    # Agreement everywhere: no evidence either way.
    assert mcnemar_p_value(a, a) == 1.0


def test_decision_reports_the_mcnemar_p_value_of_the_pair():
    champ = candidate(version="1", wrong=first_of_class(3, n=2) + first_of_class(5, n=2) + [0])
    ch = candidate(wrong=[0])  # fixes 4, keeps the shared mistake: p = 2 * 0.5**4 = 0.125
    decision = decide(ch, champ, POLICY, MODEL)
    assert decision.promoted  # +0.02 >= 0.01, whatever the p-value
    assert check(decision, "accuracy gain").detail == "0.9950 vs 0.9750, McNemar p=0.125"
