"""The typed records that cross a module boundary: one writer, one reader, refusals that say
what was expected. Fast: no model, no MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clearsight.errors import RecordError
from clearsight.monitoring import drift
from clearsight.monitoring.bounds import Bounds, OutOfBounds
from clearsight.monitoring.scores import SCORES_FILE, DriftScores


def report(drifted: bool) -> drift.DriftReport:
    tests = [
        drift.Test("ink_fraction", "input", 0.4, 1e-9, 1e-8, drifted),
        drift.Test("confidence", "confidence", 0.1, 0.5, 0.5, False),
    ]
    return drift.DriftReport(200, 0.01, tests, "logged", 0.9, 0.95)


def test_drift_scores_round_trip_through_the_file(tmp_path: Path) -> None:
    written = DriftScores.from_report(report(True), "7", "run-1")
    path = written.write(tmp_path / "traffic")
    assert path.name == SCORES_FILE and not list(path.parent.glob(".drift-*"))
    read = DriftScores.read(tmp_path / "traffic")
    assert read == written
    assert read.drifted and read.verdict == "drift"
    assert read.tests == {"ink_fraction": pytest.approx(8.0), "confidence": pytest.approx(0.30103)}
    assert read.reasons == report(True).reasons


def test_drift_scores_are_absent_before_the_first_check(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        DriftScores.read(tmp_path)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"verdict": "drift", "scores": {"drift_score_ink_fraction": 7.5}}, "not a drift-scores"),
        ([1, 2], "not a drift-scores"),
        ({"kind": "clearsight.drift-scores", "version": 2}, "version 2"),
        (
            {"kind": "clearsight.drift-scores", "version": 1, "tests": {"ink": "high"}},
            "'tests' must map",
        ),
        (
            {"kind": "clearsight.drift-scores", "version": 1, "tests": {}, "verdict": "drift"},
            "missing or mistyped model_version, drifted",
        ),
    ],
)
def test_a_reader_refuses_another_shape_or_version(tmp_path: Path, body, problem) -> None:
    (tmp_path / SCORES_FILE).write_text(json.dumps(body))
    with pytest.raises(RecordError, match=problem) as err:
        DriftScores.read(tmp_path)
    assert "expected a clearsight.drift-scores record of version 1" in err.value.one_line()


def test_a_torn_or_foreign_file_is_refused_not_half_read(tmp_path: Path) -> None:
    (tmp_path / SCORES_FILE).write_text('{"kind": "clearsight.drift-sc')
    with pytest.raises(RecordError, match="is not JSON"):
        DriftScores.read(tmp_path)


def test_out_of_distribution_checks_are_records_with_the_sentence_as_text() -> None:
    bounds = Bounds({"ink_fraction": (0.05, 0.3), "extent": (0.2, 0.9)}, "test")
    features = {
        "ink_fraction": np.array([0.1, 0.62, 0.01]),
        "extent": np.array([0.5, 0.95, 0.5]),
    }
    failed = bounds.check(features)
    assert failed[0] == []
    assert failed[1] == [
        OutOfBounds("ink_fraction", 0.62, 0.3, above=True),
        OutOfBounds("extent", 0.95, 0.9, above=True),
    ]
    assert [c.feature for c in failed[2]] == ["ink_fraction"]
    assert [str(c) for c in failed[1]] == ["ink_fraction 0.62 > 0.3", "extent 0.95 > 0.9"]
    assert str(failed[2][0]) == "ink_fraction 0.01 < 0.05"
