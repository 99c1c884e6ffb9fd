"""The monitor's retrain trigger, a use case: the labelled data a retrain would see, the last
trigger on disk, and the decision (``clearsight.retrain_policy.decide_trigger``) between them.

The last trigger lives in ``<traffic_dir>/retrain-trigger.json``, beside ``drift.json``,
written atomically when the monitor starts a retrain (before it starts, so a retrain that
crashes still counts). One file, not a Prefect or MLflow query: the CLI and the flow read it
the same way, with or without a Prefect server. A file that cannot be read counts as no
trigger (one retrain, which then rewrites it).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clearsight.config import Settings
from clearsight.errors import ClearsightError
from clearsight.files import atomic_write
from clearsight.retrain_policy import LabelledData, LastTrigger, TriggerDecision, decide_trigger

TRIGGER_FILE = "retrain-trigger.json"


def labelled_data(settings: Settings) -> LabelledData:
    """The newest data version against the runs that trained on it
    (``tracking.data_lineage.data_freshness``), and incoming batches not yet ingested.

    No readable version store (yet) is no fresh data version; incoming batches still count.
    """
    from clearsight.data.incoming import new_batches

    try:
        from clearsight.tracking.data_lineage import data_freshness

        freshness = data_freshness(settings)
    except (ImportError, OSError, ValueError, ClearsightError):
        freshness = None
    assert settings.incoming_dir is not None
    batches = tuple(sorted(b.path.name for b in new_batches(settings.incoming_dir)))
    return LabelledData(freshness, batches)


def trigger_path(settings: Settings) -> Path:
    assert settings.traffic_dir is not None
    return settings.traffic_dir / TRIGGER_FILE


def read_last_trigger(path: Path) -> LastTrigger | None:
    """The last trigger recorded at ``path``; None when there is none or it is unreadable."""
    try:
        return LastTrigger.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_trigger(path: Path, trigger: LastTrigger) -> Path:
    """Persist ``trigger`` atomically (readers see the old one or the new one)."""
    body = json.dumps(trigger.to_dict(), indent=2).encode()
    return atomic_write(path, lambda handle: handle.write(body))


def decide_on_drift(
    settings: Settings, drifted: bool, reference: str, now: datetime | None = None
) -> TriggerDecision:
    """The monitor's action for a check of champion ``reference`` (its version) that found
    ``drifted``; reads the data and the last trigger, writes nothing."""
    if not drifted:
        return decide_trigger(
            drifted=False,
            data=LabelledData(None),
            reference=reference,
            last=None,
            now=now or datetime.now(UTC),
            cooldown=timedelta(0),
        )
    return decide_trigger(
        drifted=True,
        data=labelled_data(settings),
        reference=reference,
        last=read_last_trigger(trigger_path(settings)),
        now=now or datetime.now(UTC),
        cooldown=timedelta(hours=settings.monitoring.retrain_cooldown_hours),
    )
