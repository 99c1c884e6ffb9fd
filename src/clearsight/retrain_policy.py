"""When retraining can help, and when the monitor may start one: pure, testable without MLflow.

Two decisions, each a function of plain values with a typed result that says why:

- ``decide_freshness``: is there data no finished training run has seen? It compares the
  newest data version with the runs that trained on it, *promoted or not*. Comparing with
  the champion's data instead (as before) made a lost challenger repeat itself: once a
  challenger trained on dvN lost, every nightly ``--only-if-new-data`` retrained on dvN again
  and lost again, since nothing had changed.
- ``decide_trigger``: what the hourly monitor does about drift. Drift persists for hours
  (until labels arrive and a retrained model serves), so without memory it would start a
  retrain every hour. Its rule, in order:

  1. no drift: nothing to do;
  2. drift but nothing new to train on: alert (labels are needed, not another run);
  3. no retrain triggered before: retrain;
  4. the last trigger was less than ``cooldown`` ago: skip (the nightly retrain, or a
     ``clearsight retrain`` by hand, still trains sooner if someone wants it);
  5. cooldown over, but neither the data nor the reference changed since the last trigger
     (that retrain left no finished run on this data: it failed or never ran): alert, since
     a blind repeat would fail the same way;
  6. cooldown over and new data or a changed reference (another champion) since: retrain.

  New data or a changed reference *during* the cooldown waits for its end: a stream of
  feedback makes a new data version every few minutes, and each would otherwise restart the
  loop this rule exists to stop.

``tracking.data_lineage`` reads the runs for the first, ``monitoring.retrain_trigger`` reads
and records the last trigger for the second.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class TrainedRun:
    """A finished training run and the data version it trained on (from its tags)."""

    run_id: str
    data_version: str
    run_name: str = ""
    verdict: str | None = None  # ``promotion.verdict``: promoted, rejected, None (not judged)

    def describe(self) -> str:
        judged = f", {self.verdict}" if self.verdict else ", not judged"
        name = f" {self.run_name}" if self.run_name else ""
        return f"run{name} ({self.run_id[:8]}{judged})"


@dataclass(frozen=True)
class DataFreshness:
    """The newest data version of the configured source and the newest finished run that
    trained on it (None: none did, or the source has no data version yet)."""

    newest: str | None
    trained: TrainedRun | None

    @property
    def new_data(self) -> bool:
        """A retrain would see data no finished run saw (or bootstraps a first version)."""
        return self.newest is None or self.trained is None

    def reason(self) -> str:
        if self.newest is None:
            return "the configured source has no data version yet: never trained on"
        if self.trained is None:
            return f"no finished training run has seen {self.newest}, the newest data version"
        return (
            f"{self.newest}, the newest data version, was already trained on by "
            f"{self.trained.describe()}: no new data"
        )


def decide_freshness(newest: str | None, trained: TrainedRun | None) -> DataFreshness:
    """Freshness of ``newest`` given the newest finished run on it; a run on another version
    says nothing about ``newest`` and is ignored."""
    if trained is not None and trained.data_version != newest:
        trained = None
    return DataFreshness(newest, trained)


@dataclass(frozen=True)
class LabelledData:
    """What a retrain started now would train on beyond what finished runs saw: the newest
    data version (if no finished run saw it) and incoming batches not yet ingested (a retrain
    ingests them first)."""

    freshness: DataFreshness | None  # None: no readable version store yet
    incoming: tuple[str, ...] = ()

    def why(self) -> str | None:
        """Why a retrain could help now, or None when it could not.

        A source without any data version yet counts as nothing new here: the champion the
        monitor compares with was trained on something, and retraining on an unversioned
        source would not answer drift.
        """
        reasons = []
        fresh = self.freshness
        if fresh is not None and fresh.newest is not None and fresh.new_data:
            reasons.append(fresh.reason())
        if self.incoming:
            reasons.append(f"{len(self.incoming)} new incoming batch(es)")
        return "; ".join(reasons) or None

    def mark(self) -> str:
        """A short identity of this state of the data, to tell whether it changed since the
        last trigger: the newest version and a digest of the pending batch names."""
        newest = (self.freshness.newest if self.freshness else None) or "-"
        if not self.incoming:
            return newest
        names = "\n".join(sorted(self.incoming)).encode()
        return f"{newest}+{len(self.incoming)} incoming ({hashlib.sha256(names).hexdigest()[:12]})"


class Action(StrEnum):
    NONE = "none"
    RETRAIN = "retrain"
    ALERT = "alert"
    COOLDOWN = "cooldown"


@dataclass(frozen=True)
class LastTrigger:
    """The monitor's last retrain: when, for which reference (the champion version whose
    training reference drifted) and on which data (``LabelledData.mark``)."""

    at: datetime
    reference: str
    data: str

    def to_dict(self) -> dict[str, str]:
        return {"at": self.at.isoformat(), "reference": self.reference, "data": self.data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LastTrigger:
        at = datetime.fromisoformat(str(data["at"]))
        if at.tzinfo is None:
            raise ValueError(f"trigger time {data['at']!r} has no time zone")
        return cls(at, str(data["reference"]), str(data["data"]))


@dataclass(frozen=True)
class TriggerDecision:
    """What the monitor does about this check, and why; ``record`` is the trigger to persist
    when it starts a retrain (None otherwise)."""

    action: Action
    reason: str
    record: LastTrigger | None = None


def decide_trigger(
    *,
    drifted: bool,
    data: LabelledData,
    reference: str,
    last: LastTrigger | None,
    now: datetime,
    cooldown: timedelta,
) -> TriggerDecision:
    """The monitor's answer to one check (the rule is in the module docstring)."""
    if not drifted:
        return TriggerDecision(Action.NONE, "no drift")
    why = data.why()
    if why is None:
        return TriggerDecision(
            Action.ALERT,
            "no labelled data that a finished training run has not seen: collect labels for "
            "recent traffic (POST /feedback or a batch in data/incoming/), then retrain",
        )
    record = LastTrigger(now, reference, data.mark())
    if last is None:
        return TriggerDecision(Action.RETRAIN, why, record)
    since = now - last.at
    if since < cooldown:
        until = (last.at + cooldown).isoformat(timespec="minutes")
        return TriggerDecision(
            Action.COOLDOWN,
            f"a retrain was triggered {_hours(since)} ago (for v{last.reference} on "
            f"{last.data}); the cooldown of {_hours(cooldown)} ends at {until}. Waiting: {why}",
        )
    changes = []
    if last.data != record.data:
        changes.append(f"data {last.data} -> {record.data}")
    if last.reference != reference:
        changes.append(f"reference v{last.reference} -> v{reference}")
    if not changes:
        return TriggerDecision(
            Action.ALERT,
            f"the retrain triggered {_hours(since)} ago for v{reference} on {record.data} left "
            "no finished training run on that data (it failed or never ran), and nothing "
            "changed since: look at that retrain, then `clearsight retrain` by hand",
        )
    return TriggerDecision(
        Action.RETRAIN, f"{why} (changed since the last trigger: {'; '.join(changes)})", record
    )


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"
