"""The drift monitor's latest scores: one record, written by the monitor, read by the service.

The monitor writes ``<traffic_dir>/drift.json`` after each check (``DriftScores.write``,
atomically); the service's ``/metrics`` refresher reads it (``DriftScores.read``) into its
gauges. Both sides go through this class, so the file's shape is stated once: a test's score
is keyed by the test's name, not by a prefix a reader has to cut off, and a file of another
shape or version is refused with a ``RecordError`` instead of being half read.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clearsight.errors import RecordError
from clearsight.monitoring.drift import DriftReport

SCORES_FILE = "drift.json"
KIND = "clearsight.drift-scores"
VERSION = 1


@dataclass(frozen=True)
class DriftScores:
    """The verdict of the newest monitored window, and ``-log10`` adjusted p per test."""

    model_version: str
    mlflow_run_id: str | None
    verdict: str
    drifted: bool
    reasons: list[str] = field(default_factory=list)
    tests: dict[str, float] = field(default_factory=dict)  # test name -> score

    @classmethod
    def from_report(
        cls, report: DriftReport, model_version: str, run_id: str | None
    ) -> DriftScores:
        return cls(
            model_version=model_version,
            mlflow_run_id=run_id,
            verdict=report.verdict,
            drifted=report.drifted,
            reasons=list(report.reasons),
            tests={t.name: t.score for t in report.tests},
        )

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, "version": VERSION} | asdict(self)

    def write(self, folder: Path) -> Path:
        """``folder/drift.json``, atomically (temporary file, then rename): a reader sees the
        previous record or this one, never a part."""
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / SCORES_FILE
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".drift-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(self.to_dict(), handle, indent=2)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def read(cls, folder: Path) -> DriftScores:
        """The record in ``folder/drift.json``; ``FileNotFoundError`` when there is none yet,
        ``RecordError`` when the file is not a drift-scores record of this version."""
        path = folder / SCORES_FILE
        try:
            body = json.loads(path.read_text())
        except ValueError as err:
            raise RecordError(f"{path} is not JSON ({err}); run the monitor again") from None
        return cls.from_dict(body, str(path))

    @classmethod
    def from_dict(cls, body: object, where: str = "drift scores") -> DriftScores:
        def refuse(problem: str) -> RecordError:
            return RecordError(
                f"{where}: {problem}; expected a {KIND} record of version {VERSION} "
                "(written by `clearsight monitor`)"
            )

        if not isinstance(body, dict) or body.get("kind") != KIND:
            raise refuse("not a drift-scores record")
        if body.get("version") != VERSION:
            raise refuse(f"version {body.get('version')!r}")
        tests = body.get("tests")
        if not isinstance(tests, dict) or not all(
            isinstance(k, str) and _is_number(v) for k, v in tests.items()
        ):
            raise refuse("'tests' must map test names to numbers")
        reasons = body.get("reasons", [])
        if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
            raise refuse("'reasons' must be a list of strings")
        run_id = body.get("mlflow_run_id")
        checks = {
            "model_version": isinstance(body.get("model_version"), str),
            "verdict": isinstance(body.get("verdict"), str),
            "drifted": isinstance(body.get("drifted"), bool),
            "mlflow_run_id": run_id is None or isinstance(run_id, str),
        }
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            raise refuse(f"missing or mistyped {', '.join(wrong)}")
        return cls(
            model_version=body["model_version"],
            mlflow_run_id=run_id,
            verdict=body["verdict"],
            drifted=body["drifted"],
            reasons=reasons,
            tests={k: float(v) for k, v in tests.items()},
        )


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and not math.isnan(float(value))
    )
