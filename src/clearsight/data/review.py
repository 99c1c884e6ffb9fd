"""People decide quarantined batches: ``clearsight data review``, ``accept``, ``reject``.

A quarantined batch sits in ``settings.quarantine_dir`` with its reports (``NAME.report.json``
and ``.md``, and for a failed label check the PNG grid ``NAME.labels.png``).

- **accept** moves the batch back into the incoming folder with a review record beside it
  (``.NAME.review.json``: who, when, why it had been quarantined). The next ingest checks it
  again; the label check then passes as overridden, naming the reviewer. Every other contract
  rule still applies: acceptance vouches for the labels, not for broken pixels.
- **reject** deletes the batch and its reports.

Both append one line to ``reviews.jsonl`` in the quarantine folder, the audit trail of every
decision.
"""

from __future__ import annotations

import getpass
import json
import shutil
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clearsight.config import Settings
from clearsight.data.label_check import FIGURE_SUFFIX, review_record_path
from clearsight.errors import ClearsightError

REPORT_SUFFIX = ".report.json"
AUDIT = "reviews.jsonl"


class ReviewError(ClearsightError):
    """A review decision that cannot be carried out (no such batch, a name already taken)."""


@dataclass(frozen=True)
class Quarantined:
    """One quarantined batch and why."""

    name: str
    path: Path
    reason: str
    n_images: int
    quarantined_at: str
    report: Path
    figure: Path | None
    label_check: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.name,
            "path": str(self.path),
            "reason": self.reason,
            "n_images": self.n_images,
            "quarantined_at": self.quarantined_at,
            "report": str(self.report),
            "figure": str(self.figure) if self.figure else None,
            "label_check": self.label_check,
        }


def _folder(settings: Settings) -> Path:
    assert settings.quarantine_dir is not None
    return settings.quarantine_dir


def quarantined(settings: Settings) -> list[Quarantined]:
    """Every batch waiting for a decision, oldest first."""
    folder = _folder(settings)
    found = []
    for report in sorted(folder.glob(f"*{REPORT_SUFFIX}")) if folder.is_dir() else []:
        name = report.name.removesuffix(REPORT_SUFFIX)
        batch = folder / name
        if not batch.exists():
            continue
        body = json.loads(report.read_text())
        figure = folder / (name + FIGURE_SUFFIX)
        found.append(
            Quarantined(
                name,
                batch,
                str(body.get("reason", "")),
                int(body.get("n_images") or 0),
                str(body.get("quarantined_at", "")),
                report,
                figure if figure.is_file() else None,
                body.get("label_check"),
            )
        )
    return sorted(found, key=lambda q: (q.quarantined_at, q.name))


def find(settings: Settings, name: str) -> Quarantined:
    """The quarantined batch called ``name``; ``ReviewError`` when there is none."""
    for entry in quarantined(settings):
        if entry.name == name:
            return entry
    raise ReviewError(
        f"no quarantined batch {name!r} in {_folder(settings)}; `clearsight data review` lists them"
    )


def reviewer() -> str:
    """Who decides: the login name and host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _remove_reports(entry: Quarantined) -> None:
    for path in (entry.report, entry.report.with_suffix(".md"), entry.figure):
        if path is not None:
            path.unlink(missing_ok=True)


def _audit(settings: Settings, entry: Quarantined, decision: str, record: dict[str, Any]) -> None:
    line = {"batch": entry.name, "decision": decision, "reason": entry.reason, **record}
    with (_folder(settings) / AUDIT).open("a") as handle:
        handle.write(json.dumps(line) + "\n")


def accept(settings: Settings, name: str, by: str | None = None) -> str:
    """Move a quarantined batch back for the next ingest, its label check overridden."""
    entry = find(settings, name)
    assert settings.incoming_dir is not None
    target = settings.incoming_dir / name
    if target.exists():
        raise ReviewError(f"{target} already exists; move it away first")
    record = {
        "decision": "accept",
        "by": by or reviewer(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quarantine_reason": entry.reason,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    review_record_path(target).write_text(json.dumps(record, indent=2) + "\n")
    shutil.move(entry.path, target)
    _remove_reports(entry)
    _audit(settings, entry, "accept", record)
    return (
        f"{name}: accepted by {record['by']}; back in {settings.incoming_dir} for the next ingest"
    )


def reject(settings: Settings, name: str, by: str | None = None) -> str:
    """Delete a quarantined batch and its reports."""
    entry = find(settings, name)
    if entry.path.is_dir():
        shutil.rmtree(entry.path)
    else:
        entry.path.unlink()
    _remove_reports(entry)
    record = {"by": by or reviewer(), "at": datetime.now(UTC).isoformat(timespec="seconds")}
    _audit(settings, entry, "reject", record)
    return f"{name}: rejected by {record['by']} and deleted ({entry.n_images} images)"
