"""The incoming ledger's claims, without Prefect: one claimant per batch, stale claims expire."""

from __future__ import annotations

import json
import multiprocessing
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clearsight.data.incoming import (
    DONE,
    IN_PROGRESS,
    LEDGER,
    Batch,
    claim,
    mark_seen,
    new_batches,
    read_ledger,
    release,
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "batch-1.npz").write_bytes(b"not read here")
    (incoming / "notes.txt").write_text("not a data set")
    return incoming


def _only(folder: Path) -> Batch:
    [batch] = new_batches(folder)
    return batch


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _edit(folder: Path, name: str, **fields: str) -> None:
    ledger = read_ledger(folder)
    ledger[name] |= fields
    (folder / LEDGER).write_text(json.dumps(ledger))


def test_a_claimed_batch_is_not_offered_or_claimed_again(folder: Path) -> None:
    batch = _only(folder)
    assert batch.source == "npz"
    assert claim(folder, batch, owner="host-a:1", run="run-a")
    entry = read_ledger(folder)["batch-1.npz"]
    assert entry["status"] == IN_PROGRESS and entry["fingerprint"] == batch.fingerprint
    assert entry["claimed_by"] == "host-a:1" and entry["run"] == "run-a"
    assert new_batches(folder) == []
    assert not claim(folder, batch, owner="host-b:2")


def test_the_outcome_replaces_the_claim_and_a_finished_batch_stays_finished(
    folder: Path,
) -> None:
    batch = _only(folder)
    assert claim(folder, batch)
    mark_seen(folder, batch, "promoted (v3)")
    entry = read_ledger(folder)["batch-1.npz"]
    assert entry["status"] == DONE and entry["outcome"] == "promoted (v3)"
    assert new_batches(folder) == []
    assert not claim(folder, batch), "a batch finished meanwhile must not be claimed again"


def test_a_changed_batch_counts_as_new(folder: Path) -> None:
    batch = _only(folder)
    assert claim(folder, batch)
    mark_seen(folder, batch, "kept champion (v2)")
    (folder / "batch-1.npz").write_bytes(b"new contents, new size")
    changed = _only(folder)
    assert changed.fingerprint != batch.fingerprint
    assert claim(folder, changed)


def test_entries_from_before_claims_count_as_finished(folder: Path) -> None:
    batch = _only(folder)
    legacy = {"fingerprint": batch.fingerprint, "source": "npz", "outcome": "failed: x", "at": ""}
    (folder / LEDGER).write_text(json.dumps({"batch-1.npz": legacy}))
    assert new_batches(folder) == []
    assert not claim(folder, batch)


def test_a_claim_older_than_the_timeout_is_taken_over(folder: Path) -> None:
    batch = _only(folder)
    assert claim(folder, batch, owner="other-host:1")
    old = (datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="seconds")
    _edit(folder, "batch-1.npz", claimed_at=old)
    assert new_batches(folder, stale_after=timedelta(hours=3)) == []
    assert not claim(folder, batch, owner="me:2", stale_after=timedelta(hours=3))
    assert new_batches(folder, stale_after=timedelta(hours=1)) == [batch]
    assert claim(folder, batch, owner="me:2", stale_after=timedelta(hours=1))
    assert read_ledger(folder)["batch-1.npz"]["claimed_by"] == "me:2"


def test_a_claim_whose_process_on_this_host_died_is_taken_over_at_once(folder: Path) -> None:
    batch = _only(folder)
    assert claim(folder, batch, owner=f"{socket.gethostname()}:{_dead_pid()}")
    assert new_batches(folder) == [batch]
    assert claim(folder, batch, owner="me:2")


def test_release_drops_only_its_own_claim(folder: Path) -> None:
    batch = _only(folder)
    assert claim(folder, batch, owner="host-a:1")
    release(folder, batch, owner="host-b:2")
    assert read_ledger(folder)["batch-1.npz"]["status"] == IN_PROGRESS
    release(folder, batch, owner="host-a:1")
    assert "batch-1.npz" not in read_ledger(folder)
    assert new_batches(folder) == [batch]


def _claim_in_child(folder: str, batch: Batch, owner: str, start, results) -> None:
    start.wait(timeout=30)
    results.put(claim(Path(folder), batch, owner=owner))


def test_of_several_processes_claiming_at_once_exactly_one_wins(folder: Path) -> None:
    batch = _only(folder)
    context = multiprocessing.get_context("fork")
    start = context.Barrier(4)
    results = context.Queue()
    children = [
        context.Process(
            target=_claim_in_child, args=(str(folder), batch, f"host:{i}", start, results)
        )
        for i in range(4)
    ]
    for child in children:
        child.start()
    won = [results.get(timeout=30) for _ in children]
    for child in children:
        child.join(timeout=30)
    assert sorted(won) == [False, False, False, True]
    assert read_ledger(folder)["batch-1.npz"]["status"] == IN_PROGRESS
