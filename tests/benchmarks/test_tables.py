"""The docs' benchmark numbers can be re-derived: every generated table matches its committed
result file, every option a cited command passes exists, and the time-to-target arithmetic
says "not reached" and "lower bound" where it must. Standard library only: milliseconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import tables
from benchmarks.time_to_target import Curve, Point, first_reach, summary


def curve(*accuracies: float, epoch_s: float = 2.0) -> Curve:
    return Curve([Point(i + 1, epoch_s * (i + 1), a) for i, a in enumerate(accuracies)])


def train_result(seed_curves: list[Curve], our_curves: list[Curve]) -> dict[str, object]:
    runs = [
        {
            "seed": i,
            "trainings": [
                {"code": "seed", "curve": s.to_list(), "load_average_start": [1.0, 1.0, 1.0]},
                {"code": "ours", "curve": o.to_list(), "load_average_start": [1.0, 1.0, 1.0]},
            ],
        }
        for i, (s, o) in enumerate(zip(seed_curves, our_curves, strict=True))
    ]
    return {
        "target": 0.98,
        "thresholds": [0.95, 0.98],
        "max_epochs": 4,
        "clearsight_settings": {"epochs": 4},
        "runs": runs,
    }


@pytest.mark.parametrize("doc", tables.DOCS, ids=lambda p: p.name)
def test_docs_tables_are_what_their_result_files_give(doc: Path) -> None:
    text = doc.read_text()
    assert tables.BLOCK.search(text), f"{doc.name} has no generated table"
    assert tables.render(text) == text, "stale table: run `python -m benchmarks.tables`"


def test_every_generated_table_cites_a_committed_file() -> None:
    for doc in tables.DOCS:
        for match in tables.BLOCK.finditer(doc.read_text()):
            assert match["kind"] in tables.KINDS
            if match["kind"].startswith("train") or match["kind"] == "ingest":
                assert (tables.REPO / match["file"]).is_file(), match["file"]


def test_every_option_the_docs_cite_exists() -> None:
    assert tables.unknown_options() == []


def test_a_removed_option_is_caught(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "Run `uv run --no-sync python benchmarks/serve.py --seconds 8 --requests 400` and\n"
        "`python -m benchmarks.tables --check`; `python benchmarks/nothing.py --x`.\n"
    )
    assert tables.cited_options(doc.read_text()) == [
        ("serve", "--seconds"),
        ("serve", "--requests"),
        ("tables", "--check"),
        ("nothing", "--x"),
    ]
    problems = tables.unknown_options((doc,))
    assert problems == [
        f"{doc}: benchmarks/nothing.py does not exist",
        f"{doc}: benchmarks/serve.py has no option --requests",
    ]


def test_time_to_target_reached_and_not() -> None:
    rising = curve(0.9, 0.97, 0.981, 0.99)
    assert first_reach(rising, 0.98) == Point(3, 6.0, 0.981)
    assert summary(rising, 0.98) | {"best_accuracy": 0} == {
        "target": 0.98,
        "reached": True,
        "seconds": 6.0,
        "epochs": 3,
        "best_accuracy": 0,
    }
    flat = curve(0.9, 0.97, 0.975)
    assert first_reach(flat, 0.98) is None
    missed = summary(flat, 0.98)
    assert (missed["reached"], missed["seconds"], missed["epochs"]) == (False, 6.0, 3)
    assert Curve.from_list(rising.to_list()) == rising


def test_train_table_exact_and_lower_bound() -> None:
    fast = curve(0.96, 0.985, epoch_s=1.0)  # 0.98 at 2 s
    slow = curve(0.95, 0.97, 0.98, epoch_s=3.0)  # 0.98 at 9 s
    never = curve(0.95, 0.96, 0.97, 0.975, epoch_s=3.0)  # not reached in 12 s
    text = tables.train_table(train_result([slow, never], [fast, fast]))
    assert "| 0 | 1.0 | 9.0 | 3 | 2.0 | 2 | 4.50x |" in text
    assert "| 1 | 1.0 | >= 12.0 (not reached) | 4 | 2.0 | 2 | >= 6.00x |" in text
    assert "**met (as lower bounds: the seed code did not reach 0.98 in 1 of 2 runs)**" in text
    missed = tables.train_table(train_result([fast], [slow]))
    assert "0.22x" in missed and "**MISSED**" in missed
    thresholds = tables.train_thresholds_table(train_result([slow, never], [fast, fast]))
    assert "| 0.95 | 3.0 (2/2) | 1.0 (2/2) | 3.00x, 3.00x |" in thresholds
    assert "| 0.98 | 9.0 (1/2) | 2.0 (2/2) | 4.50x, >= 6.00x |" in thresholds


def test_a_missing_file_awaits_a_run_and_a_file_renders(tmp_path: Path) -> None:
    text = "a\n<!-- table:serve results/serve.json -->\nold\n<!-- /table -->\nb\n"
    assert tables.render(text, tmp_path) == (
        "a\n<!-- table:serve results/serve.json -->\n"
        "_Awaiting a run: `results/serve.json` is not committed yet._\n\n<!-- /table -->\nb\n"
    )
    (tmp_path / "results").mkdir()
    row = {"server": "s", "workload": "predict", "mode": "closed", "load": "c=1"}
    row |= {"requests": 10, "rps": 5.0, "p50_ms": 1, "p95_ms": 2, "p99_ms": 3, "errors": 0}
    (tmp_path / "results" / "serve.json").write_text(json.dumps({"rows": [row]}))
    assert "| s | predict | closed | c=1 | 10 | 5 | 1.0 | 2.0 | 3.0 | 0 |" in tables.render(
        text, tmp_path
    )
    with pytest.raises(ValueError, match="unknown table kind"):
        tables.table("nope", "x.json", tmp_path)
