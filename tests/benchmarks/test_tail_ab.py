"""The paired A/B harness of the predict tail (its arguments, arithmetic and table) and the
forward-call table. No server is started here (the harness itself is the slow part); milliseconds."""

from __future__ import annotations

import argparse
import sys

import pytest

from benchmarks import tables, tail_ab


def test_a_variant_is_a_name_and_its_environment() -> None:
    assert tail_ab.parse_variant("off=A=0,B=x y") == ("off", {"A": "0", "B": "x y"})
    assert tail_ab.parse_variant("as shipped=") == ("as shipped", {})
    with pytest.raises(argparse.ArgumentTypeError, match="needs a name"):
        tail_ab.parse_variant("=A=1")
    with pytest.raises(argparse.ArgumentTypeError, match="not KEY=value"):
        tail_ab.parse_variant("off=A")


def run(round_: int, variant: str, p99: float, capacity: float = 700.0) -> dict[str, object]:
    return {
        "round": round_,
        "variant": variant,
        "capacity_rps": capacity,
        "p50_ms": p99 / 4,
        "p99_ms": p99,
        "server_core_busy": 0.8,
    }


RUNS = [
    run(0, "base", 50.0),
    run(0, "new", 30.0),
    run(1, "new", 40.0),  # the order alternates: B A in odd rounds
    run(1, "base", 35.0),
    run(2, "base", 60.0),
    run(2, "new", 20.0, capacity=800.0),
]


def test_the_summary_pairs_rounds_against_the_first_variant() -> None:
    summary = tail_ab.summarize(RUNS, ["base", "new"])
    assert summary["base"]["median_p99_ms"] == 50.0
    assert summary["new"]["median_p99_ms"] == 30.0
    assert summary["new"]["lower_p99_than_base"] == 2  # rounds 0 and 2, not 1
    assert summary["new"]["rounds"] == 3
    assert summary["new"]["median_p99_ratio"] == pytest.approx(0.6)  # 30/50, 40/35, 20/60
    assert summary["new"]["median_capacity_rps"] == 700.0
    assert "lower_p99_than_base" not in summary["base"]


def test_the_table_shows_every_round_and_the_verdict() -> None:
    result = {
        "environment": {"command": "python -m benchmarks.tail_ab --rounds 3", "date": "d"},
        "variants": {"base": {"X_NICE": "0"}, "new": {}},
        "fraction": 0.5,
        "seconds": 10.0,
        "runs": RUNS,
        "summary": tail_ab.summarize(RUNS, ["base", "new"]),
    }
    text = tables.tail_ab_table(result, "r.json")
    assert "base: `X_NICE=0`; new: as shipped" in text
    assert "| 1 | 700 | 8.8 | 35.0 | 80 % | 700 | 10.0 | 40.0 | 80 % |" in text
    assert "p99 lower than base's in 2 of 3 rounds, median ratio 0.60" in text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_core_ticks_count_busy_within_total() -> None:
    busy, total = tail_ab.core_ticks({0})
    assert 0 <= busy <= total and total > 0
    assert tail_ab.core_ticks({10_000}) == (0, 0)  # a core this machine does not have


def test_the_forward_call_table_reads_its_file() -> None:
    result = {
        "environment": {"command": "python -m benchmarks.forward_call", "date": "d"},
        "batches": {
            "1": {
                "keras_us": 311.2,
                "litert_us": 58.4,
                "speedup": 5.33,
                "max_probability_difference": 1.5e-8,
            }
        },
    }
    assert "| 1 | 311 | 58 | 5.33x | 1e-08 |" in tables.forward_call_table(result, "f.json")


def test_the_ledger_insert_table_reads_its_file() -> None:
    row = {"p50_ms": 0.0712, "p99_ms": 0.53, "p999_ms": 5.31, "max_ms": 8.6, "over_10_ms": 0}
    result = {
        "environment": {"command": "python -m benchmarks.ledger_insert", "date": "d"},
        "rate": 800.0,
        "seconds": 20.0,
        "rows": [row | {"variant": "this tree", "round": 0, "wal_mb": 5.3, "dropped": 0}],
    }
    table = tables.ledger_insert_table(result, "f.json")
    assert "| this tree | 0 | 0.071 | 0.53 | 5.3 | 8.6 | 0 | 5.3 | 0 |" in table
    assert "800 calls/s for 20 s" in table
