"""Poll ``data/incoming/`` and retrain on every new data set dropped there.

Polling (a deployment on an interval schedule, see prefect.yaml) rather than an event trigger:
it needs no file-system event source, works the same on a laptop, in the compose stack and on
Kubernetes, and the ledger makes it idempotent. Each batch runs the ``retrain`` flow as a
subflow; a batch that fails the data contract is recorded as such and not retried.

Two watchers may overlap (the deployment's own limit cancels a scheduled run while one is
still going, but a manual run, a second worker or ``make schedule`` beside the compose stack
can still start one), so each batch is claimed in the ledger before its retrain starts and
only the watcher whose claim succeeds trains it (``clearsight.data.incoming.claim``). A
claim whose run died is taken over after ``claim_timeout_minutes``, or at once when its
process on this host is gone.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script or a deployment entrypoint
    sys.path.insert(0, str(ROOT))

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from clearsight.config import Settings
from clearsight.data.incoming import CLAIM_TIMEOUT, claim, mark_seen, new_batches, release
from flows.retrain import retrain


@flow(name="watch-incoming", log_prints=True)
def watch_incoming(
    claim_timeout_minutes: int = int(CLAIM_TIMEOUT.total_seconds() // 60),
) -> list[dict[str, str]]:
    """Retrain once per new batch this run claims; returns each batch with its outcome."""
    logger = get_run_logger()
    folder = Settings().incoming_dir
    stale_after = timedelta(minutes=claim_timeout_minutes)
    run_name = f"{flow_run.get_name()} ({flow_run.get_id()})"
    outcomes = []
    for batch in new_batches(folder, stale_after):
        if not claim(folder, batch, stale_after=stale_after, run=run_name):
            logger.info("%s is being (or was) retrained by another run: skipped", batch.path)
            continue
        logger.info("new data in %s (%s): retraining", batch.path, batch.source)
        try:
            state = retrain(source=batch.source, path=str(batch.path), return_state=True)
        except BaseException:  # stopped or crashed here: let the next poll take it again
            release(folder, batch)
            raise
        if state.is_completed():
            summary = state.result()
            outcome = "promoted" if summary.promoted else "kept champion"
            outcome += f" (v{summary.version})"
        else:
            outcome = f"failed: {state.message or state.name}"
        mark_seen(folder, batch, outcome)
        outcomes.append({"batch": batch.path.name, "outcome": outcome})
    if not outcomes:
        logger.info("nothing new in %s", folder)
    return outcomes


if __name__ == "__main__":
    watch_incoming()
