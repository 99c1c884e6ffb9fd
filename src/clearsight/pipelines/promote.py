"""Promote: challenger against champion on the same frozen holdout; aliases move on a pass.

Both versions are loaded from the registry and scored in this process on the same holdout
and, unless ``check_explanations`` is off, on the same explanation panel
(``settings.explain.panel_size`` images); the pure policy (``clearsight.promotion.decide``)
decides, and ``clearsight.tracking.registry`` moves the aliases and records the decision where
people look for it in the MLflow UI.
"""

from __future__ import annotations

from clearsight.config import Settings
from clearsight.data import Dataset, holdout_panel
from clearsight.errors import ConfigurationError
from clearsight.promotion import (
    Candidate,
    Decision,
    decide,
    holdout_of_other_task,
    refuse_other_task,
    same_task,
    score,
    task_summary,
)
from clearsight.tracking.registry import registry_session


def evaluate_and_promote(
    settings: Settings,
    holdout: Dataset,
    challenger_version: str | None = None,
    *,
    check_explanations: bool = True,
) -> Decision:
    """Score challenger (the newest version unless named) and champion, decide, move aliases,
    record the decision; returns it with every check and the numbers it was decided on. A
    champion trained for another task (shape or classes) is kept without being compared; a
    challenger of another task than the holdout's is refused before any alias moves."""
    panel = holdout_panel(holdout, settings.explain.panel_size) if check_explanations else None
    with registry_session(settings) as registry:
        version = challenger_version or registry.latest()
        champion_version = registry.champion()
        # Loaded before any alias moves: a version that cannot load is refused untouched.
        candidate = registry.load(version)
        ours = registry.task(version)
        if (held := holdout_of_other_task(ours, holdout)) is not None:
            # A version of another dataset cannot be scored on this holdout (another shape, or
            # labels that mean other classes): say so instead of failing inside the model.
            raise ConfigurationError(
                f"{registry.name} v{version} was trained for {task_summary(ours)}, but the "
                f"frozen holdout holds {task_summary(held)}: promote it with the settings "
                "(data directory) of the dataset it was trained on"
            )
        registry.mark_challenger(version)
        challenger = score(candidate, version, holdout, panel)
        champion: Candidate | None = None
        decision: Decision | None = None
        if champion_version and champion_version != version:
            theirs = registry.task(champion_version)
            if not same_task(ours, theirs):
                decision = refuse_other_task(
                    challenger, ours, champion_version, theirs, registry.name
                )
            else:
                champion = score(registry.load(champion_version), champion_version, holdout, panel)
        if decision is None:
            decision = decide(challenger, champion, settings.promotion, registry.name)
        if decision.promoted:
            registry.crown(version)
        registry.record(decision)
    return decision
