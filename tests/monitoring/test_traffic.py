"""The traffic log: sampled, bounded by rotation, never a torn file, never a failed request."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from clearsight.monitoring import traffic
from clearsight.monitoring.requests import RequestMonitor, default_bounds
from clearsight.monitoring.traffic import TrafficLog, chunks, read_window


def review_batches(log: TrafficLog, batches: int, size: int, seed: int = 0) -> np.ndarray:
    """Send ``batches`` requests of ``size`` random images through a RequestMonitor."""
    rng = np.random.default_rng(seed)
    monitor = RequestMonitor(default_bounds(), log, "7", run_id="run-7")
    sent = []
    for i in range(batches):
        x = rng.random((size, 28, 28, 1), dtype=np.float32)
        p = rng.dirichlet(np.ones(10), size)
        monitor.review(x, p, f"req-{i}")
        sent.append(x[..., 0])
    log.flush()
    return np.concatenate(sent)


def test_records_round_trip(tmp_path: Path) -> None:
    log = TrafficLog(tmp_path, sample_rate=1.0, max_records=1000)
    sent = review_batches(log, 3, 4)
    window = read_window(tmp_path)
    assert len(window) == 12
    np.testing.assert_allclose(window.pixels, sent, atol=1 / 255)
    assert set(window.request_ids) == {"req-0", "req-1", "req-2"}
    assert set(window.model_versions) == {"7"}
    assert set(window.run_ids) == {"run-7"}
    assert len(read_window(tmp_path, 5)) == 5


def test_chunks_from_before_run_ids_still_read_and_their_summaries_are_ignored(
    tmp_path: Path,
) -> None:
    """A chunk written by an older service (caller-derived ``attribution_*`` columns, no
    ``run_ids``) reads next to a new one: run id "" and no attribution column is used."""
    log = TrafficLog(tmp_path, sample_rate=1.0, max_records=100)
    review_batches(log, 1, 3)
    new = chunks(tmp_path)[0]
    with np.load(new) as data:
        columns = {k: data[k] for k in data.files if k != "run_ids"}
    columns["attribution_ig_spread"] = np.array([1.0, 2.0])
    old = tmp_path / "00000000000000000001-1-2.npz"  # sorts first: the oldest chunk
    with old.open("wb") as handle:
        np.savez(handle, **{k: v[:2] for k, v in columns.items()})
    window = read_window(tmp_path)
    assert len(window) == 5
    assert list(window.run_ids) == ["", "", "run-7", "run-7", "run-7"]
    assert not hasattr(window, "attributions")


def test_rotation_keeps_at_most_max_records_and_the_newest(tmp_path: Path) -> None:
    log = TrafficLog(tmp_path, sample_rate=1.0, max_records=50)
    for i in range(12):  # one chunk per flush: 12 x 8 = 96 records written in all
        review_batches(log, 1, 8, seed=i)
    total = sum(traffic.chunk_records(p) for p in chunks(tmp_path))
    assert 40 <= total <= 50
    assert log.written == 96
    window = read_window(tmp_path)
    assert window.times[-1] == window.times.max()  # the newest survived


def test_requests_in_quick_succession_share_one_chunk(tmp_path: Path) -> None:
    """One file per second at most, not one per request (a file per request cost a third of
    the server's CPU under load)."""
    log = TrafficLog(tmp_path, sample_rate=1.0, max_records=10_000)
    monitor = RequestMonitor(default_bounds(), log, "1")
    x = np.zeros((1, 28, 28, 1), np.float32)
    for i in range(40):
        monitor.review(x, np.eye(10)[:1], f"r{i}")
    log.flush()
    assert len(read_window(tmp_path)) == 40
    assert len(chunks(tmp_path)) <= 2


def test_sampling_rate_and_switching_off(tmp_path: Path) -> None:
    sampled = TrafficLog(tmp_path / "a", sample_rate=0.25, max_records=10_000, seed=3)
    review_batches(sampled, 20, 20)
    assert 60 <= len(read_window(tmp_path / "a")) <= 140  # 100 expected
    off = TrafficLog(tmp_path / "b", sample_rate=0.0, max_records=10_000)
    review_batches(off, 2, 5)
    assert not (tmp_path / "b").exists()


def test_an_unwritable_folder_drops_records_and_never_raises(tmp_path: Path, caplog) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the folder should be")
    log = TrafficLog(blocked, sample_rate=1.0, max_records=100)
    review_batches(log, 2, 3)  # would raise here if a write failure reached the caller
    assert log.dropped == 6 and log.written == 0
    assert "records dropped" in caplog.text


def test_a_write_that_dies_midway_leaves_no_torn_file(tmp_path: Path, monkeypatch) -> None:
    """A crash inside the write (disk full after half the bytes) leaves no chunk and no
    temporary file; readers only ever see whole chunks."""
    real_savez = np.savez

    def half_then_fail(handle, **columns):
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(traffic.np, "savez", half_then_fail)
    log = TrafficLog(tmp_path, sample_rate=1.0, max_records=100)
    review_batches(log, 1, 4)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(traffic.np, "savez", real_savez)
    review_batches(log, 1, 4)
    assert len(read_window(tmp_path)) == 4


def test_readers_never_see_a_torn_chunk_while_writers_rotate(tmp_path: Path) -> None:
    log = TrafficLog(tmp_path, sample_rate=1.0, max_records=64)
    stop = threading.Event()
    errors: list[BaseException] = []

    def read_forever() -> None:
        while not stop.is_set():
            try:
                read_window(tmp_path)
            except BaseException as err:  # a torn file would be a zip/npz error here
                errors.append(err)
                return

    reader = threading.Thread(target=read_forever)
    reader.start()
    try:
        review_batches(log, 60, 8)
    finally:
        stop.set()
        reader.join()
    assert not errors, errors
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_a_large_gathering_is_written_as_chunks_of_the_chunk_size(tmp_path: Path) -> None:
    """The writer takes everything queued at once; files stay at most CHUNK_RECORDS long."""
    log = TrafficLog(tmp_path, sample_rate=1.0, max_records=10_000)
    review_batches(log, 1, 2 * traffic.CHUNK_RECORDS + 10)
    sizes = sorted(traffic.chunk_records(p) for p in chunks(tmp_path))
    assert sum(sizes) == 2 * traffic.CHUNK_RECORDS + 10
    assert max(sizes) <= traffic.CHUNK_RECORDS


def test_the_writer_sleeps_through_a_flood_of_submits(tmp_path: Path, monkeypatch) -> None:
    """A request only queues its record: the writer wakes once, takes all of them after
    FLUSH_SECONDS, and is hurried when the queue is half full (not once per record)."""
    monkeypatch.setattr(traffic, "FLUSH_SECONDS", 30.0)
    log = TrafficLog(tmp_path, sample_rate=1.0, max_records=100_000)
    monitor = RequestMonitor(default_bounds(), log, "1")
    x = np.zeros((1, 28, 28, 1), np.float32)
    for i in range(50):
        monitor.review(x, np.eye(10)[:1], f"r{i}")
    assert chunks(tmp_path) == []  # nothing written yet: the writer gathers
    monkeypatch.setattr(traffic, "QUEUE_RECORDS", 100)
    monitor.review(np.zeros((60, 28, 28, 1), np.float32), np.eye(10)[[0] * 60], "big")
    for _ in range(100):  # half full: hurried, written long before FLUSH_SECONDS
        if sum(traffic.chunk_records(p) for p in chunks(tmp_path)) == 110:
            break
        time.sleep(0.1)
    assert sum(traffic.chunk_records(p) for p in chunks(tmp_path)) == 110
