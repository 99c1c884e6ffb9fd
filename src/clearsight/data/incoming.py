"""New data dropped into ``data/incoming/`` and the ledger of what was already seen.

Each top-level entry of the folder is one batch, a complete data set in any supported form: an
``.npz`` file, a folder of IDX files, or a ``<label>/*.png`` tree. A polling flow asks for
``new_batches`` and retrains on each; the ledger (``.ledger.json`` beside the batches, written
atomically) records the outcome, so a bad batch is reported once, not retried forever.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from clearsight.choices import SourceName

LEDGER = ".ledger.json"


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
    if any(p.is_dir() and p.name.isdigit() for p in path.iterdir()):
        return "folder"
    return None


def fingerprint(path: Path) -> str:
    """Names, sizes and modification times: a changed batch counts as new."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return ";".join(
        f"{p.relative_to(path.parent)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files
    )


def read_ledger(folder: Path) -> dict[str, dict[str, str]]:
    ledger = folder / LEDGER
    return json.loads(ledger.read_text()) if ledger.is_file() else {}


def new_batches(folder: Path) -> list[Batch]:
    """Entries not yet in the ledger (or changed since), oldest first."""
    if not folder.is_dir():
        return []
    seen = read_ledger(folder)
    batches = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime_ns):
        if entry.name.startswith("."):
            continue
        source = detect_source(entry)
        stamp = fingerprint(entry)
        if source and seen.get(entry.name, {}).get("fingerprint") != stamp:
            batches.append(Batch(entry, source, stamp))
    return batches


def mark_seen(folder: Path, batch: Batch, outcome: str) -> None:
    """Record a batch's outcome; atomic, so a crash never leaves a half-written ledger."""
    ledger = read_ledger(folder)
    ledger[batch.path.name] = {
        "fingerprint": batch.fingerprint,
        "source": batch.source,
        "outcome": outcome,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".json", delete=False) as tmp:
        json.dump(ledger, tmp, indent=2)
    os.replace(tmp.name, folder / LEDGER)
