"""Champion / challenger promotion on the frozen holdout, aliases, and rollback.

Policy: a challenger replaces the champion only if, scored in the same process on the same
frozen holdout, it gains at least ``min_accuracy_gain`` accuracy (ties keep the champion), no
class recall falls below the floor, its single-image p95 latency and size stay within budget,
and its explanations pass the quality checks. The first model bootstraps (only the relative
check is skipped). Aliases: ``challenger`` always moves to the newest version; ``champion``
moves only on a pass, and the replaced champion becomes ``previous-champion``. A registered
model tag keeps the champion history, so ``rollback`` can be repeated.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from clearsight import tracking
from clearsight.config import PromotionSettings, Settings
from clearsight.data import Dataset
from clearsight.errors import RegistryError
from clearsight.evaluation import Evaluation, evaluate, mcnemar_p_value, single_image_latency_ms

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous-champion"
HISTORY_TAG = "champion_history"

ExplanationScorer = Callable[[keras.Model, Dataset], dict[str, float]]


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
    explanation: dict[str, float]

    def metrics(self) -> dict[str, float]:
        return (
            self.evaluation.metrics()
            | {
                "latency_p95_ms": self.latency_p95_ms,
                "model_mb": self.size_mb,
            }
            | self.explanation
        )


def model_size_mb(model: keras.Model) -> float:
    """Size of the saved ``.keras`` file: what a deployment has to ship."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return path.stat().st_size / 1e6


def score(
    model: keras.Model, version: str, holdout: Dataset, explain_scorer: ExplanationScorer | None
) -> Candidate:
    """Evaluate one model version on the holdout, with latency, size and explanations."""
    pixels = holdout.pixels()
    return Candidate(
        version=version,
        evaluation=evaluate(model, pixels, holdout.labels),
        latency_p95_ms=single_image_latency_ms(model, pixels)["p95"],
        size_mb=model_size_mb(model),
        explanation=explain_scorer(model, holdout) if explain_scorer else {},
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
    gap = challenger.explanation.get("explain_ig_completeness_gap_median")
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
    deletion = challenger.explanation.get("explain_ig_deletion_auc_zero")
    random_deletion = challenger.explanation.get("explain_random_deletion_auc_zero")
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


def _explain_failure(check: Check) -> str:
    """'accuracy gain 0 (needs >= 0.001; 0.9810 vs 0.9810, McNemar p=1)'."""
    observed = "n/a" if check.observed is None else f"{check.observed:.4g}"
    limit = "" if check.threshold is None else f"limit {check.threshold:.4g}; "
    return f"{check.name} {observed} ({limit}{check.detail})"


# --- registry state --------------------------------------------------------------------


def alias_version(client: MlflowClient, model: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


def champion_history(client: MlflowClient, model: str) -> list[str]:
    tags = client.get_registered_model(model).tags
    return [v for v in tags.get(HISTORY_TAG, "").split(",") if v]


def _set_champion(client: MlflowClient, model: str, history: list[str]) -> None:
    """Point champion at the last of ``history`` and previous-champion at the one before."""
    client.set_registered_model_tag(model, HISTORY_TAG, ",".join(history))
    client.set_registered_model_alias(model, CHAMPION, history[-1])
    if len(history) > 1:
        client.set_registered_model_alias(model, PREVIOUS, history[-2])
    else:
        with contextlib.suppress(MlflowException):
            client.delete_registered_model_alias(model, PREVIOUS)


def load_version(model: str, version: str, folder: Path) -> keras.Model:
    import mlflow.keras

    folder.mkdir(parents=True, exist_ok=True)
    return mlflow.keras.load_model(f"models:/{model}/{version}", dst_path=str(folder))


def resolve_version(settings: Settings, ref: str) -> tuple[MlflowClient, str, str]:
    """(client, registered name, version) for an alias (``champion``...) or a version number."""
    tracking.configure(settings)
    client = MlflowClient()
    name = settings.tracking.registered_model
    version = ref if ref.isdigit() else alias_version(client, name, ref)
    if version is None:
        raise RegistryError(f"'{name}' has no model with alias '{ref}'; train and promote first")
    return client, name, version


def load_model_ref(settings: Settings, ref: str, folder: Path) -> tuple[keras.Model, str]:
    """A model by alias (``champion``, ``challenger``...) or version number; returns its version."""
    _, name, version = resolve_version(settings, ref)
    try:
        return load_version(name, version, folder), version
    except MlflowException as err:
        raise RegistryError(f"cannot load {name} v{version}: {str(err).splitlines()[0]}") from None


def latest_version(client: MlflowClient, model: str) -> str:
    versions = client.search_model_versions(f"name='{model}'")
    if not versions:
        raise RegistryError(f"registered model '{model}' has no versions; train one first")
    return str(max(int(v.version) for v in versions))


def evaluate_and_promote(
    settings: Settings,
    holdout: Dataset,
    challenger_version: str | None = None,
    explain_scorer: ExplanationScorer | None = None,
) -> Decision:
    """Score challenger and champion on the holdout, decide, move aliases, log the decision."""
    tracking.configure(settings)
    client = MlflowClient()
    name = settings.tracking.registered_model
    version = challenger_version or latest_version(client, name)
    champion_version = alias_version(client, name, CHAMPION)
    client.set_registered_model_alias(name, CHALLENGER, version)
    with tempfile.TemporaryDirectory() as tmp:
        challenger = score(
            load_version(name, version, Path(tmp) / "c"), version, holdout, explain_scorer
        )
        champion = None
        if champion_version and champion_version != version:
            champion = score(
                load_version(name, champion_version, Path(tmp) / "p"),
                champion_version,
                holdout,
                explain_scorer,
            )
    decision = decide(challenger, champion, settings.promotion, name)
    if decision.promoted:
        _set_champion(client, name, [*champion_history(client, name), version])
    record_decision(client, decision)
    return decision


def record_decision(client: MlflowClient, decision: Decision) -> None:
    """The decision as artifacts and tags of the challenger's run and model version."""
    mv = client.get_model_version(decision.model, decision.challenger_version)
    verdict = "promoted" if decision.promoted else "rejected"
    if mv.run_id:
        client.log_text(mv.run_id, decision.to_markdown(), "promotion/decision.md")
        client.log_dict(mv.run_id, decision.to_dict(), "promotion/decision.json")
        client.set_tag(mv.run_id, "promotion.verdict", verdict)
        client.set_tag(mv.run_id, "promotion.reason", decision.reason[:500])
        for key, value in decision.challenger_metrics.items():
            client.log_metric(mv.run_id, f"promotion.{key}", value)
    client.set_model_version_tag(decision.model, decision.challenger_version, "promotion", verdict)


def rollback(settings: Settings) -> tuple[str, str]:
    """Make the previous champion the champion again; returns (from_version, to_version)."""
    tracking.configure(settings)
    client = MlflowClient()
    name = settings.tracking.registered_model
    try:
        history = champion_history(client, name)
    except MlflowException:
        raise RegistryError(f"registered model '{name}' does not exist") from None
    if len(history) < 2:
        raise RegistryError(f"'{name}' has no previous champion to roll back to")
    current = history.pop()
    _set_champion(client, name, history)
    client.set_model_version_tag(name, current, "rolled_back", "true")
    return current, history[-1]


def registry_state(settings: Settings) -> dict[str, Any]:
    """Aliases and history, for the CLI and flow summaries."""
    tracking.configure(settings)
    client = MlflowClient()
    name = settings.tracking.registered_model
    return {
        "model": name,
        CHAMPION: alias_version(client, name, CHAMPION),
        CHALLENGER: alias_version(client, name, CHALLENGER),
        PREVIOUS: alias_version(client, name, PREVIOUS),
        "history": champion_history(client, name),
    }
