"""Poll ``data/incoming/``: ingest every new batch, then retrain once if the data changed.

Polling (a deployment on an interval schedule, see prefect.yaml) rather than an event trigger:
it needs no file-system event source, works the same on a laptop, in the compose stack and on
Kubernetes, and the ledger makes it idempotent. Each poll ingests all new batches
(``clearsight.pipelines.ingest.ingest_pending``: claim -> accept as a new data version, or
quarantine with a report -> ledger), then, if the newest data version changed, runs ONE
``retrain`` (as a subflow) on it: ten feedback batches make ten versions and one training.

Two watchers may overlap (the deployment's own limit cancels a scheduled run while one is
still going, but a manual run, a second worker or ``make schedule`` beside the compose stack
can still start one), so each batch is claimed in the ledger before it is ingested
(``clearsight.data.incoming.claim``, file-locked) and only the watcher whose claim succeeds
ingests it. A claim whose run died is taken over after ``claim_timeout_minutes``, or at once
when its process on this host is gone.
"""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from clearsight.config import Settings
from clearsight.data.incoming import CLAIM_TIMEOUT
from flows.retrain import retrain


@flow(name="watch-incoming", log_prints=True)
def watch_incoming(
    claim_timeout_minutes: int = int(CLAIM_TIMEOUT.total_seconds() // 60),
) -> list[dict[str, str]]:
    """Ingest the new batches this run claims; retrain once when the newest data version
    changed. Returns each batch with its outcome (and the retrain's, on accepted ones)."""
    from clearsight.pipelines.ingest import ingest_pending

    logger = get_run_logger()
    settings = Settings()
    run_name = f"{flow_run.get_name()} ({flow_run.get_id()})"
    result = ingest_pending(
        settings, timedelta(minutes=claim_timeout_minutes), run=f"{run_name} (watch-incoming)"
    )
    outcomes = [{"batch": o.batch, "outcome": o.line()} for o in result.outcomes]
    if not outcomes:
        logger.info("nothing new in %s", settings.incoming_dir)
        return outcomes
    create_markdown_artifact(
        markdown=result.to_markdown(), key="incoming", description=f"newest {result.after}"
    )
    for outcome in result.outcomes:
        logger.info("%s", outcome.line())
    if not result.changed:
        logger.info("no batch accepted: the data version stays %s, no retrain", result.before)
        return outcomes
    path = str(settings.data.path) if settings.data.path else None
    state = retrain(source=settings.data.source, path=path, return_state=True)
    if state.is_completed():
        summary = state.result()
        trained = "promoted" if summary.promoted else "kept champion"
        trained += f" (v{summary.version}, {result.after})"
    else:
        trained = f"retrain failed: {state.message or state.name}"
    for entry, outcome in zip(outcomes, result.outcomes, strict=True):
        if outcome.accepted:
            entry["retrain"] = trained
    return outcomes


if __name__ == "__main__":
    watch_incoming()
