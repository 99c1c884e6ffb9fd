"""The champion/challenger policy: pure, testable without MLflow.

A challenger replaces the champion only if, scored in the same process on the same frozen
holdout, it gains at least ``min_accuracy_gain`` accuracy (ties keep the champion), no class
recall falls below the floor, its single-image p95 latency and size stay within budget, and
its integrated gradients stay complete and beat a random deletion order on the holdout panel.
The first model bootstraps (only the relative check is skipped). ``decide`` returns every
check with its numbers; ``tracking.registry`` moves the aliases and records the decision.

Models trained for different tasks (image shape or class names) are never compared: a
champion for 28x28 digits cannot be scored on a holdout of 32x32 colour shapes, and accuracy
on different classes says nothing about which model is better. ``refuse_other_task`` keeps the
champion with that reason instead.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras

from clearsight.choices import INTEGRATED_GRADIENTS
from clearsight.config import PromotionSettings
from clearsight.data import Dataset
from clearsight.model.evaluation import (
    Evaluation,
    evaluate,
    mcnemar_p_value,
    single_image_latency_ms,
)
from clearsight.quality_metrics import (
    COMPLETENESS_GAP_MEDIAN,
    RANDOM,
    QualityMetrics,
    deletion_auc,
)
from clearsight.task import ImageTask, to_model_input

IG = INTEGRATED_GRADIENTS


@dataclass(frozen=True)
class Check:
    """One rule of the policy with the numbers it was decided on."""

    name: str
    passed: bool
    observed: float | None
    threshold: float | None
    detail: str


@dataclass
class Decision:
    """The verdict, each check, and the inputs it was decided on."""

    model: str
    challenger_version: str
    champion_version: str | None
    promoted: bool
    reason: str
    checks: list[Check] = field(default_factory=list)
    challenger_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        verdict = "**promoted**" if self.promoted else "**kept the champion**"
        lines = [
            f"# Promotion decision: {self.model} v{self.challenger_version}",
            "",
            f"Challenger v{self.challenger_version} vs champion "
            f"{'v' + self.champion_version if self.champion_version else '(none: bootstrap)'}: "
            f"{verdict}. {self.reason}",
            "",
            "| check | result | observed | threshold | detail |",
            "|---|---|---|---|---|",
        ]
        for c in self.checks:
            obs = "" if c.observed is None else f"{c.observed:.4g}"
            thr = "" if c.threshold is None else f"{c.threshold:.4g}"
            lines.append(
                f"| {c.name} | {'pass' if c.passed else 'FAIL'} | {obs} | {thr} | {c.detail} |"
            )
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Candidate:
    """A model version scored on the holdout, with what the policy needs to know of it."""

    version: str
    evaluation: Evaluation
    latency_p95_ms: float
    size_mb: float
    explanation: QualityMetrics | None  # None: the explanation checks were skipped

    def metrics(self) -> dict[str, float]:
        return (
            self.evaluation.metrics()
            | {
                "latency_p95_ms": self.latency_p95_ms,
                "model_mb": self.size_mb,
            }
            | (self.explanation.flat() if self.explanation is not None else {})
        )


def model_size_mb(model: keras.Model) -> float:
    """Size of the saved ``.keras`` file: what a deployment has to ship."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return path.stat().st_size / 1e6


def explanation_checks(model: keras.Model, panel: Dataset) -> QualityMetrics:
    """Integrated-gradients quality on the holdout panel: what the policy checks.

    Only completeness and deletion against a random order are computed; the full report with
    every method and the sanity check belongs to the training run. Same panel, same record
    (``QualityMetrics``) as the run, so the numbers agree.
    """
    from clearsight.explain.quality import quality_report

    x = to_model_input(panel.pixels())
    return quality_report(model, x, methods=(IG,), randomize=False).quality


def score(model: keras.Model, version: str, holdout: Dataset, panel: Dataset | None) -> Candidate:
    """Evaluate one model version on the holdout, with latency, size and (on ``panel``)
    explanation quality; ``panel=None`` skips the explanation checks."""
    pixels = holdout.pixels()
    return Candidate(
        version=version,
        evaluation=evaluate(model, pixels, holdout.labels),
        latency_p95_ms=single_image_latency_ms(model, pixels)["p95"],
        size_mb=model_size_mb(model),
        explanation=explanation_checks(model, panel) if panel is not None else None,
    )


def decide(
    challenger: Candidate, champion: Candidate | None, policy: PromotionSettings, model: str
) -> Decision:
    """Apply the policy; every check is kept, passed or not, for the record."""
    ch = challenger.evaluation
    checks = [
        Check(
            "min class recall",
            bool(ch.per_class_recall.min() >= policy.min_class_recall),
            float(ch.per_class_recall.min()),
            policy.min_class_recall,
            f"weakest class {int(ch.per_class_recall.argmin())}",
        ),
        Check(
            "latency p95 (ms)",
            challenger.latency_p95_ms <= policy.max_latency_p95_ms,
            challenger.latency_p95_ms,
            policy.max_latency_p95_ms,
            "one image, warm",
        ),
        Check(
            "model size (MB)",
            challenger.size_mb <= policy.max_model_mb,
            challenger.size_mb,
            policy.max_model_mb,
            ".keras file",
        ),
    ]
    quality = challenger.explanation or QualityMetrics()
    gap = quality.value(IG, COMPLETENESS_GAP_MEDIAN)
    if gap is not None:
        checks.append(
            Check(
                "IG completeness gap (median)",
                gap <= policy.max_completeness_gap,
                gap,
                policy.max_completeness_gap,
                "attributions add up",
            )
        )
    deletion = quality.value(IG, deletion_auc("zero"))
    random_deletion = quality.value(RANDOM, deletion_auc("zero"))
    if deletion is not None and random_deletion is not None:
        checks.append(
            Check(
                "IG deletion AUC < random",
                deletion < random_deletion,
                deletion,
                random_deletion,
                "removing top pixels hurts faster than random",
            )
        )
    if champion is None:
        checks.append(Check("accuracy gain", True, ch.accuracy, None, "no champion: bootstrap"))
    else:
        gain = ch.accuracy - champion.evaluation.accuracy
        p = mcnemar_p_value(ch.correct, champion.evaluation.correct)
        checks.append(
            Check(
                "accuracy gain",
                gain > 0 and gain >= policy.min_accuracy_gain,
                gain,
                policy.min_accuracy_gain,
                f"{ch.accuracy:.4f} vs {champion.evaluation.accuracy:.4f}, McNemar p={p:.3g}",
            )
        )
    failed = [c for c in checks if not c.passed]
    if failed:
        reason = "Kept the champion. Failed: " + "; ".join(_explain_failure(c) for c in failed)
    elif champion is None:
        reason = "First model: it becomes the champion."
    else:
        reason = "Passed every check: the challenger becomes the champion."
    return Decision(
        model=model,
        challenger_version=challenger.version,
        champion_version=champion.version if champion else None,
        promoted=not failed,
        reason=reason,
        checks=checks,
        challenger_metrics=challenger.metrics(),
        champion_metrics=champion.metrics() if champion else {},
    )


def same_task(a: ImageTask, b: ImageTask) -> bool:
    """Comparable on one holdout: the same input shape and the same classes in the same order.
    (The digit rules are a data setting; they do not change what the model takes or answers.)
    """
    return a.input_shape == b.input_shape and a.class_names == b.class_names


def holdout_of_other_task(task: ImageTask, holdout: Dataset) -> ImageTask | None:
    """The holdout's own task when a model of ``task`` cannot be scored on it, else None."""
    held = holdout.task(task.digit_like)
    return None if same_task(task, held) else held


def task_summary(task: ImageTask) -> str:
    """'28x28 grey, 10 classes: 0, 1, ...' (the first few names; enough to tell tasks apart)."""
    names = ", ".join(task.class_names[:5]) + (", ..." if task.n_classes > 5 else "")
    return f"{task.describe()}: {names}"


def refuse_other_task(
    challenger: Candidate,
    challenger_task: ImageTask,
    champion_version: str,
    champion_task: ImageTask,
    model: str,
) -> Decision:
    """Keep the champion without comparing: the two models were trained for different tasks.

    The challenger's own numbers are kept for the record (it was scored on its own holdout);
    the champion is not scored at all (its input shape may not even fit that holdout).
    """
    detail = f"challenger {task_summary(challenger_task)}; champion {task_summary(champion_task)}"
    return Decision(
        model=model,
        challenger_version=challenger.version,
        champion_version=champion_version,
        promoted=False,
        reason=(
            f"Kept the champion, not compared: trained for a different task ({detail}). "
            "Register models of another dataset under their own name (tracking.registered_model)."
        ),
        checks=[Check("same task", False, None, None, detail)],
        challenger_metrics=challenger.metrics(),
    )


def _explain_failure(check: Check) -> str:
    """'accuracy gain 0 (needs >= 0.001; 0.9810 vs 0.9810, McNemar p=1)'."""
    observed = "n/a" if check.observed is None else f"{check.observed:.4g}"
    limit = "" if check.threshold is None else f"limit {check.threshold:.4g}; "
    return f"{check.name} {observed} ({limit}{check.detail})"
