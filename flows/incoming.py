"""Poll ``data/incoming/`` and retrain on every new data set dropped there.

Polling (a deployment on an interval schedule, see prefect.yaml) rather than an event trigger:
it needs no file-system event source, works the same on a laptop, in the compose stack and on
Kubernetes, and the ledger makes it idempotent. Each batch runs the ``retrain`` flow as a
subflow; a batch that fails the data contract is recorded as such and not retried.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script or a deployment entrypoint
    sys.path.insert(0, str(ROOT))

from prefect import flow, get_run_logger

from clearsight.config import Settings
from clearsight.data.incoming import mark_seen, new_batches
from flows.retrain import retrain


@flow(name="watch-incoming", log_prints=True)
def watch_incoming() -> list[dict[str, str]]:
    """Retrain once per new batch; returns each batch with its outcome."""
    logger = get_run_logger()
    folder = Settings().incoming_dir
    outcomes = []
    for batch in new_batches(folder):
        logger.info("new data in %s (%s): retraining", batch.path, batch.source)
        state = retrain(source=batch.source, path=str(batch.path), return_state=True)
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
