"""The serving benchmark's verdicts: the framework's floor is a yardstick, never a peer."""

from __future__ import annotations

from benchmarks.serve import FLOOR, PREDICT, TARGET_P99_MS, Row, verdicts


def _row(server: str, load: str, rps: float, p99_ms: float) -> Row:
    mode = "closed" if load.startswith("c=") else "open"
    return Row(server, PREDICT, mode, load, 1000, 8.0, rps, 5.0, 10.0, p99_ms, 0)


def test_the_floor_is_never_the_best_peer_and_is_printed_beside_the_tail_target() -> None:
    rows = [
        _row("clearsight", "c=32", 259.0, 166.0),
        _row("clearsight", "50% = 130/s", 129.0, 90.7),
        _row(FLOOR, "c=32", 889.0, 77.6),  # far faster: it computes nothing
        _row(FLOOR, "50% = 445/s", 439.0, 42.1),
        _row("bentoml", "c=32", 137.0, 306.0),
    ]
    checks = verdicts(rows)
    versus_peer = checks["predict req/s at c=32 vs best peer"]
    assert versus_peer["best_peer"] == "bentoml"
    assert versus_peer["value"] == 259.0 / 137.0
    tail = checks[f"clearsight {PREDICT} p99 at 50 % of capacity (ms)"]
    assert tail == {"value": 90.7, "target": TARGET_P99_MS, "met": False, "floor_p99_ms": 42.1}


def test_without_a_floor_row_the_tail_check_has_no_floor() -> None:
    checks = verdicts([_row("clearsight", "50% = 130/s", 129.0, 20.0)])
    assert checks[f"clearsight {PREDICT} p99 at 50 % of capacity (ms)"] == {
        "value": 20.0,
        "target": TARGET_P99_MS,
        "met": True,
    }
