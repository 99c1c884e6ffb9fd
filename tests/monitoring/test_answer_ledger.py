"""The answer ledger keeps the database off the event loop (``record`` only queues) and its
write-ahead log bounded."""

from __future__ import annotations

import sqlite3
import time

import numpy as np

from clearsight.monitoring import answers as answers_module
from clearsight.monitoring.answers import FILE, AnswerLedger

IMAGE = np.random.default_rng(0).random((1, 28, 28)).astype(np.float32)


def _insert(ledger: AnswerLedger, i: int) -> None:
    ledger.record(f"request-{i:06d}", IMAGE, np.array([3]), np.array([0.9]), "1")


def _log_frames(path) -> int:
    """Frames in the write-ahead log now (a passive checkpoint's report; copies nothing new
    when the log is already copied)."""
    with sqlite3.connect(path) as db:
        [(_, logged, _)] = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    return logged


def test_recording_never_waits_on_the_database(tmp_path):
    """``record`` runs on the service's event loop: with the database locked by another
    writer (as during a long checkpoint or on a slow disk) it still returns at once, and the
    answers are written once the lock is gone."""
    ledger = AnswerLedger(tmp_path / FILE, max_rows=10_000, max_age_s=3600, checkpoint_every_s=60)
    try:
        _insert(ledger, 0)
        assert ledger.flush()
        blocker = sqlite3.connect(tmp_path / FILE, timeout=0, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock
        slowest = 0.0
        for i in range(1, 301):
            began = time.perf_counter()
            _insert(ledger, i)
            slowest = max(slowest, time.perf_counter() - began)
        assert not ledger.flush(timeout_s=0.3)  # the writer is waiting for the lock
        blocker.execute("ROLLBACK")
        blocker.close()
        assert slowest < 0.2, f"record waited {slowest:.3f} s"  # the lock wait would be 5 s
        assert [a.row for a in ledger.lookup("request-000300")] == [0]
        assert ledger.dropped == 0
    finally:
        ledger.close()


def test_a_full_queue_drops_answers_instead_of_growing(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(answers_module, "MAX_PENDING_ROWS", 5)
    ledger = AnswerLedger(tmp_path / FILE, max_rows=10_000, max_age_s=3600, checkpoint_every_s=60)
    blocker = sqlite3.connect(tmp_path / FILE, timeout=0, isolation_level=None)
    try:
        _insert(ledger, 0)
        assert ledger.flush()
        blocker.execute("BEGIN IMMEDIATE")
        _insert(ledger, 1)
        deadline = time.monotonic() + 10
        while ledger.queued_rows and time.monotonic() < deadline:  # the writer takes it and
            time.sleep(0.01)  # waits for the lock
        with caplog.at_level("WARNING", logger="clearsight.monitoring.answers"):
            for i in range(2, 20):
                _insert(ledger, i)
        assert ledger.queued_rows == 5 and ledger.dropped == 18 - 5
        assert (
            sum("dropped until the writer catches up" in r.getMessage() for r in caplog.records)
            == 1
        )
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        ledger.close()
    assert [
        a.row for a in AnswerLedger(tmp_path / FILE, 10_000, 3600).lookup("request-000001")
    ] == [0]


def test_the_log_starts_over_under_steady_inserts(tmp_path):
    """One passive pass per interval would never catch up; the catch-up passes do, so the
    log holds about one interval of answers, not all of them."""
    ledger = AnswerLedger(tmp_path / FILE, max_rows=10_000, max_age_s=3600, checkpoint_every_s=0.1)
    try:
        began = time.monotonic()
        i = 0
        while time.monotonic() - began < 2.0:  # ~1,000 inserts, a pause of 1 ms after each
            _insert(ledger, i)
            i += 1
            time.sleep(0.001)
        frames_per_insert = 2  # at least: a table page and an index page
        assert _log_frames(tmp_path / FILE) < i * frames_per_insert / 4
    finally:
        ledger.close()
    reopened = AnswerLedger(tmp_path / FILE, max_rows=10_000, max_age_s=3600)
    try:
        assert [a.row for a in reopened.lookup(f"request-{i - 1:06d}")] == [0]
        assert [a.row for a in reopened.lookup("request-000000")] == [0]
    finally:
        reopened.close()


def test_a_quiet_checkpoint_reports_everything_copied(tmp_path):
    ledger = AnswerLedger(tmp_path / FILE, max_rows=10_000, max_age_s=3600, checkpoint_every_s=60)
    try:
        for i in range(50):
            _insert(ledger, i)
        assert ledger.flush()
        with sqlite3.connect(tmp_path / FILE) as db:
            assert ledger.checkpoint(db)
        _insert(ledger, 50)  # begins while everything is copied: the log starts over
        assert ledger.flush()
        assert _log_frames(tmp_path / FILE) <= 4
    finally:
        ledger.close()


class _BrokenConnection:
    """A connection whose every statement fails, as on a full disk."""

    def execute(self, _: str) -> None:
        raise sqlite3.OperationalError("database or disk is full")


def test_a_failing_checkpoint_is_said_once_and_its_recovery_too(tmp_path, caplog):
    ledger = AnswerLedger(tmp_path / FILE, max_rows=10_000, max_age_s=3600, checkpoint_every_s=60)
    try:
        _insert(ledger, 0)
        with caplog.at_level("INFO", logger="clearsight.monitoring.answers"):
            for _ in range(5):
                assert not ledger.checkpoint(_BrokenConnection())  # type: ignore[arg-type]
            with sqlite3.connect(tmp_path / FILE) as db:
                assert ledger.checkpoint(db)
        messages = [r.getMessage() for r in caplog.records]
        assert sum("checkpoint of" in m and "disk is full" in m for m in messages) == 1
        assert sum("work again" in m for m in messages) == 1
        assert [a.row for a in ledger.lookup("request-000000")] == [0]
    finally:
        ledger.close()


def test_an_unwritable_ledger_drops_answers_and_keeps_its_writer(tmp_path, caplog):
    (tmp_path / "taken").write_text("a file where the ledger's folder should be")
    ledger = AnswerLedger(tmp_path / "taken" / FILE, 10_000, 3600, checkpoint_every_s=0.05)
    try:
        with caplog.at_level("WARNING", logger="clearsight.monitoring.answers"):
            for i in range(3):
                _insert(ledger, i)
                assert ledger.flush()  # written or dropped: either way, done
            time.sleep(0.2)  # a few checkpoint intervals: they must not end the writer
            _insert(ledger, 3)
            assert ledger.flush()
        assert ledger.dropped == 4
        assert sum("not recorded" in r.getMessage() for r in caplog.records) == 4
    finally:
        ledger.close()


def test_rows_recorded_together_are_written_together(tmp_path, monkeypatch):
    """The writer wakes for the first row after a pause and lets rows gather: one
    transaction for a burst of requests, not one wake-up (a GIL hand-off) per row; a lookup
    hurries it instead of waiting out the gathering time."""
    monkeypatch.setattr(answers_module, "GATHER_S", 30.0)
    ledger = AnswerLedger(tmp_path / FILE, max_rows=10_000, max_age_s=3600, checkpoint_every_s=60)
    transactions = []
    write = ledger._write
    monkeypatch.setattr(
        ledger, "_write", lambda rows: (transactions.append(len(rows)), write(rows))
    )
    try:
        for i in range(20):
            _insert(ledger, i)
        began = time.perf_counter()
        assert [a.row for a in ledger.lookup("request-000019")] == [0]
        assert time.perf_counter() - began < 10  # hurried, not the 30 s of gathering
        assert transactions == [20]
    finally:
        ledger.close()
