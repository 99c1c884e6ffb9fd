"""New data dropped into ``data/incoming/`` and the ledger of what was already seen.

Each top-level entry of the folder is one batch, a complete data set in any supported form: an
``.npz`` file, a folder of IDX files, or a ``<class>/*.png`` tree. A polling flow asks for
``new_batches``, ``claim``s each one and retrains on it; the ledger (``.ledger.json`` beside the
batches) records the outcome, so a bad batch is reported once, not retried forever.

Two pollers can run at once (an overlapping schedule, a second worker, a manual run), so a
batch is claimed *before* its retrain starts: ``claim`` records it ``in_progress`` with its
fingerprint under an exclusive ``fcntl.flock`` on ``.ledger.lock``, and only the poller whose
claim succeeds trains it. Every read-modify-write of the ledger holds that lock and replaces
the file atomically, so neither a second process nor a crash can leave a torn ledger.

A claim left behind by a run that died is not honoured forever: it can be taken over once it
is older than ``stale_after`` (the watcher's ``claim_timeout_minutes``, by default longer than
the retrain flow's own 4-hour timeout, so a live claim never expires), or at once when its
owner was a process on this host that no longer exists. To retry a batch by hand, delete its
entry from the ledger.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from clearsight.choices import SourceName
from clearsight.files import atomic_write, exclusive_lock

LEDGER = ".ledger.json"
LOCK = ".ledger.lock"
IN_PROGRESS = "in_progress"
DONE = "done"
# Longer than the retrain flow's timeout (4 h): a claim this old belongs to a run that is gone.
CLAIM_TIMEOUT = timedelta(hours=5)


@dataclass(frozen=True)
class Batch:
    """One new data set: where it is, how to read it, and a fingerprint of its files."""

    path: Path
    source: SourceName
    fingerprint: str


def detect_source(path: Path) -> SourceName | None:
    """Which reader fits an incoming entry; None for anything unrecognised."""
    if path.is_file():
        return "npz" if path.suffix == ".npz" else None
    if not path.is_dir():
        return None
    if any(path.glob("*images*idx3-ubyte*")):
        return "idx"
    from clearsight.data.folder import IMAGE_SUFFIXES

    class_dirs = (p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if any(f.suffix.lower() in IMAGE_SUFFIXES for d in class_dirs for f in d.rglob("*")):
        return "folder"
    return None


def fingerprint(path: Path) -> str:
    """Names, sizes and modification times: a changed batch counts as new."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return ";".join(
        f"{p.relative_to(path.parent)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files
    )


def default_owner() -> str:
    """Who holds a claim: host and process id (enough to spot a claim whose process died)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def read_ledger(folder: Path) -> dict[str, dict[str, Any]]:
    ledger = folder / LEDGER
    return json.loads(ledger.read_text()) if ledger.is_file() else {}


def ledger_lock(folder: Path) -> AbstractContextManager[None]:
    """Exclusive across processes (and threads: each call opens its own file description)."""
    return exclusive_lock(folder / LOCK)


def _write_ledger(folder: Path, ledger: dict[str, dict[str, Any]]) -> None:
    """Atomic: readers see the old ledger or the new one, never half of one."""
    atomic_write(folder / LEDGER, lambda h: h.write(json.dumps(ledger, indent=2).encode()))


def _now() -> datetime:
    return datetime.now(UTC)


def _owner_gone(owner: str) -> bool:
    """True when the claim's owner was a process on this host that has exited."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def claim_is_stale(entry: dict[str, Any], stale_after: timedelta, now: datetime) -> bool:
    """An ``in_progress`` entry that no live run stands behind any more."""
    claimed = datetime.fromisoformat(entry.get("claimed_at") or entry["at"])
    return now - claimed > stale_after or _owner_gone(entry.get("claimed_by", ""))


def _is_pending(
    entry: dict[str, Any] | None, stamp: str, stale_after: timedelta, now: datetime
) -> bool:
    """Whether a batch with fingerprint ``stamp`` still needs a retrain, given its entry."""
    if entry is None or entry.get("fingerprint") != stamp:
        return True
    # Entries written before claims existed have no status: they carry a final outcome.
    if entry.get("status", DONE) == IN_PROGRESS:
        return claim_is_stale(entry, stale_after, now)
    return False


def new_batches(folder: Path, stale_after: timedelta = CLAIM_TIMEOUT) -> list[Batch]:
    """Entries not yet in the ledger (or changed since, or with a stale claim), oldest first.

    A hint only: two pollers may both list a batch; ``claim`` decides which one trains it.
    """
    if not folder.is_dir():
        return []
    seen = read_ledger(folder)
    now = _now()
    batches = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime_ns):
        if entry.name.startswith("."):
            continue
        source = detect_source(entry)
        if source is None:
            continue
        stamp = fingerprint(entry)
        if _is_pending(seen.get(entry.name), stamp, stale_after, now):
            batches.append(Batch(entry, source, stamp))
    return batches


def claim(
    folder: Path,
    batch: Batch,
    owner: str | None = None,
    stale_after: timedelta = CLAIM_TIMEOUT,
    run: str = "",
) -> bool:
    """Record ``batch`` as in progress for ``owner`` (``run`` names the flow run, for people);
    False when another run already has it or it was finished meanwhile. The check and the
    write happen under the ledger lock, so of two pollers exactly one gets True."""
    owner = owner or default_owner()
    with ledger_lock(folder):
        ledger = read_ledger(folder)
        now = _now()
        if not _is_pending(ledger.get(batch.path.name), batch.fingerprint, stale_after, now):
            return False
        stamp = now.isoformat(timespec="seconds")
        ledger[batch.path.name] = {
            "fingerprint": batch.fingerprint,
            "source": batch.source,
            "status": IN_PROGRESS,
            "outcome": IN_PROGRESS,
            "claimed_by": owner,
            "claimed_at": stamp,
            "run": run,
            "at": stamp,
        }
        _write_ledger(folder, ledger)
    return True


def release(folder: Path, batch: Batch, owner: str | None = None) -> None:
    """Drop our claim without an outcome (the run was stopped): the next poll retries it."""
    owner = owner or default_owner()
    with ledger_lock(folder):
        ledger = read_ledger(folder)
        entry = ledger.get(batch.path.name)
        if entry and entry.get("status") == IN_PROGRESS and entry.get("claimed_by") == owner:
            del ledger[batch.path.name]
            _write_ledger(folder, ledger)


def mark_seen(folder: Path, batch: Batch, outcome: str) -> None:
    """Record a batch's final outcome, replacing its claim."""
    with ledger_lock(folder):
        ledger = read_ledger(folder)
        previous = ledger.get(batch.path.name, {})
        ledger[batch.path.name] = {
            "fingerprint": batch.fingerprint,
            "source": batch.source,
            "status": DONE,
            "outcome": outcome,
            "claimed_by": previous.get("claimed_by", ""),
            "run": previous.get("run", ""),
            "at": _now().isoformat(timespec="seconds"),
        }
        _write_ledger(folder, ledger)
