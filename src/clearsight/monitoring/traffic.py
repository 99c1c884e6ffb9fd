"""The traffic log: a bounded, rotating record of what the service answered.

Each sampled image becomes a record: the pixels the model saw (uint8), its input features,
predicted label, confidence, the serving model's version and training run id, request id and
time. No attribution summary is logged, even when the request computed integrated gradients:
those maps follow the caller's steps, targets and budget, so logging them would let callers
skew the attribution drift test. The monitor computes every summary itself, off the request
path, with fixed parameters (``features.MONITOR_IG``) and the model of the version that served
the image (``clearsight.monitoring.check.served_attributions``). Chunks written before this
(with ``attribution_*`` columns and no ``run_ids``) still read; those columns are ignored.

Pixels are stored as the model saw them: grey (H, W), colour (H, W, 3), with that image's
input features (grey names, or per-channel names for colour: ``features.input_feature_names``).
One chunk holds one kind of image (records of another shape, e.g. after a live swap to a
model of another task, go to their own chunk), and a window is the newest chunks of the
newest chunk's kind: traffic of different shapes is never tested as one sample.

Writes never slow or fail a prediction: ``submit`` only samples and puts records on a bounded
queue (dropping, with a warning, when it is full); one daemon thread writes them. Each write
is one ``.npz`` chunk of up to ``CHUNK_RECORDS`` records, written to a temporary file and
renamed into place, so a reader (the monitor) never sees a torn file. A failed write (full
disk, permissions) logs a warning and drops those records.

The writer sleeps ``FLUSH_SECONDS`` after the first record and then writes all that gathered
(a file a second, one per ``CHUNK_RECORDS`` under heavier traffic, never one per request). It
keeps the list of its chunks in memory: after each write the oldest chunks are deleted until
at most ``max_records`` records remain, without listing the folder. A first version wrote one file per answered image and listed the folder after each;
under load that took a third of the server's CPU (py-spy, ``benchmarks/serve.py``).
"""

from __future__ import annotations

import logging
import os
import queue
import random
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clearsight.monitoring.features import INPUT_FEATURES, input_feature_names

logger = logging.getLogger(__name__)

CHUNK_RECORDS = 256
FLUSH_SECONDS = 1.0  # the longest a record waits in memory before it is written
QUEUE_RECORDS = 10_000
SUFFIX = ".npz"
READ_COLUMNS = frozenset(
    {"pixels", "labels", "confidences", "model_versions", "request_ids", "times", "run_ids"}
)
FEATURE_PREFIX = "feature_"  # a column per input feature, whatever the image's channels


@dataclass(frozen=True)
class TrafficRecord:
    """One answered image."""

    pixels: np.ndarray  # (H, W) grey or (H, W, 3) colour, float in 0-1, as the model saw it
    features: dict[str, float]
    label: int
    confidence: float
    model_version: str
    request_id: str
    time: float = 0.0
    run_id: str = ""  # the serving version's training run ("" when unknown)


@dataclass(frozen=True)
class TrafficWindow:
    """Records as columns, oldest first (what the monitor tests)."""

    pixels: np.ndarray  # float32 (N, H, W) grey or (N, H, W, 3) colour, in 0-1
    features: dict[str, np.ndarray]
    labels: np.ndarray
    confidences: np.ndarray
    model_versions: np.ndarray
    request_ids: np.ndarray
    times: np.ndarray
    run_ids: np.ndarray  # "" where unknown (and for chunks written before run ids were)

    def __len__(self) -> int:
        return len(self.labels)


def chunk_name(records: int) -> str:
    return f"{time.time_ns():020d}-{os.getpid()}-{records}{SUFFIX}"


def chunk_records(path: Path) -> int:
    return int(path.stem.rsplit("-", 1)[1])


def chunks(folder: Path) -> list[Path]:
    """Complete chunk files, oldest first (temporary files are skipped)."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f"*{SUFFIX}") if p.stem.count("-") == 2]
    return sorted(found, key=lambda p: p.name)


def write_chunk(folder: Path, records: list[TrafficRecord]) -> Path:
    """One chunk, atomically: temporary file in the same folder, then ``os.replace``."""
    folder.mkdir(parents=True, exist_ok=True)
    columns: dict[str, np.ndarray] = {
        "pixels": np.stack(
            [np.rint(np.clip(r.pixels, 0, 1) * 255).astype(np.uint8) for r in records]
        ),
        "labels": np.array([r.label for r in records], dtype=np.int16),
        "confidences": np.array([r.confidence for r in records], dtype=np.float32),
        "model_versions": np.array([r.model_version for r in records]),
        "request_ids": np.array([r.request_id for r in records]),
        "times": np.array([r.time for r in records], dtype=np.float64),
        "run_ids": np.array([r.run_id for r in records]),
    }
    for name in records[0].features:
        columns[FEATURE_PREFIX + name] = np.array([r.features[name] for r in records])
    target = folder / chunk_name(len(records))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **columns)  # type: ignore[arg-type]  # numpy's stub lets **arrays fill allow_pickle: bool
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def kind(record: TrafficRecord) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """What must match for records to share a chunk: pixel shape and feature names."""
    return np.shape(record.pixels), tuple(record.features)


def grouped(records: list[TrafficRecord]) -> list[list[TrafficRecord]]:
    """Records split by ``kind``, each group in arrival order (one group in normal service)."""
    groups: dict[tuple[tuple[int, ...], tuple[str, ...]], list[TrafficRecord]] = {}
    for record in records:
        groups.setdefault(kind(record), []).append(record)
    return list(groups.values())


def _columns(path: Path) -> dict[str, np.ndarray] | None:
    """One chunk's columns (None when it was rotated away while we read)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            columns = {
                key: data[key]
                for key in data.files
                if key in READ_COLUMNS or key.startswith(FEATURE_PREFIX)
            }
    except FileNotFoundError:  # rotated away while we read: the window is just shorter
        return None
    columns.setdefault("run_ids", np.full(len(columns["labels"]), ""))  # an older chunk
    return columns


def _chunk_kind(columns: dict[str, np.ndarray]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    names = tuple(sorted(k for k in columns if k.startswith(FEATURE_PREFIX)))
    return tuple(columns["pixels"].shape[1:]), names


def _empty_window() -> TrafficWindow:
    empty = np.zeros(0)
    return TrafficWindow(
        np.zeros((0, 28, 28), np.float32),
        {k: empty for k in INPUT_FEATURES},
        np.zeros(0, np.int64),
        empty,
        np.zeros(0, str),
        np.zeros(0, str),
        empty,
        np.zeros(0, str),
    )


def read_window(folder: Path, window: int | None = None) -> TrafficWindow:
    """The ``window`` most recent records (all when None), oldest first, of the newest
    chunk's kind of image (older chunks of another shape or feature set are skipped)."""
    loaded: list[dict[str, np.ndarray]] = []
    newest = None
    count = 0
    for path in reversed(chunks(folder)):
        if window is not None and count >= window:
            break
        columns = _columns(path)
        if columns is None:
            continue
        if newest is None:
            newest = _chunk_kind(columns)
        elif _chunk_kind(columns) != newest:
            continue
        loaded.append(columns)
        count += len(columns["labels"])
    if not loaded:
        return _empty_window()
    col = {k: np.concatenate([c[k] for c in reversed(loaded)]) for k in loaded[0]}
    start = 0 if window is None else max(0, len(col["labels"]) - window)
    cut = {k: v[start:] for k, v in col.items()}
    names = [k.removeprefix(FEATURE_PREFIX) for k in cut if k.startswith(FEATURE_PREFIX)]
    pixels = cut["pixels"].astype(np.float32) / 255.0
    order = input_feature_names(pixels.shape[-1] if pixels.ndim == 4 else 1)
    return TrafficWindow(
        pixels=pixels,
        features={k: cut[FEATURE_PREFIX + k] for k in order if k in names},
        labels=cut["labels"].astype(np.int64),
        confidences=cut["confidences"].astype(np.float64),
        model_versions=cut["model_versions"],
        request_ids=cut["request_ids"],
        times=cut["times"],
        run_ids=cut["run_ids"],
    )


class TrafficLog:
    """Samples records and writes them from one background thread (see the module docstring)."""

    def __init__(
        self,
        folder: Path,
        sample_rate: float,
        max_records: int,
        *,
        seed: int | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.sample_rate = sample_rate
        self.max_records = max_records
        self.dropped = 0
        self.written = 0
        self._random = random.Random(seed)
        self._queue: queue.Queue[TrafficRecord | None] = queue.Queue(maxsize=QUEUE_RECORDS)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._hurry = threading.Event()  # flush(): write what is gathered now
        self._chunks: deque[tuple[Path, int]] = deque()  # the writer's own view, oldest first

    @property
    def enabled(self) -> bool:
        return self.sample_rate > 0 and self.max_records > 0

    def sampled(self) -> bool:
        """Whether to keep the next image (a cheap coin toss, on the request path)."""
        return self.enabled and self._random.random() < self.sample_rate

    def submit(self, records: list[TrafficRecord]) -> None:
        """Queue records for writing; never blocks and never raises."""
        if not records:
            return
        self._start()
        if self._queue.qsize() + len(records) > QUEUE_RECORDS // 2:  # write before it fills
            self._hurry.set()
        for record in records:
            try:
                self._queue.put_nowait(record)
            except queue.Full:
                self.dropped += 1
                if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                    logger.warning("traffic log queue full: %d records dropped", self.dropped)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        self._hurry.set()
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="clearsight-traffic-log", daemon=True
                )
                self._thread.start()

    def _gather(self) -> list[TrafficRecord | None]:
        """Block for one record, then let ``FLUSH_SECONDS`` of records gather (less when
        hurried) and take all of them.

        Why sleep instead of taking records as they come: waiting in ``queue.get`` woke this
        thread for every record, and each wake-up took the GIL from the event loop at its next
        release (a socket call, a numpy call): measured, that hand-off was the largest single
        cost on the request path at half load. Now a request only appends to the queue."""
        batch = [self._queue.get()]
        self._hurry.wait(FLUSH_SECONDS)
        self._hurry.clear()
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                return batch

    def _rotate(self, written: Path, count: int) -> None:
        """Delete the oldest chunks beyond ``max_records``, from the writer's own list."""
        self._chunks.append((written, count))
        total = sum(n for _, n in self._chunks)
        while self._chunks and total > self.max_records:
            path, n = self._chunks.popleft()
            path.unlink(missing_ok=True)
            total -= n

    def _write(self, records: list[TrafficRecord]) -> None:
        """One chunk; a failed write (full disk, permissions) drops it with a warning."""
        try:
            written = write_chunk(self.folder, records)
            self.written += len(records)
            self._rotate(written, len(records))
        except Exception as err:  # full disk, permissions: drop, never fail a prediction
            self.dropped += len(records)
            logger.warning(
                "traffic log: %d records dropped, cannot write to %s: %s",
                len(records),
                self.folder,
                err,
            )

    def _run(self) -> None:
        # Chunks left by an earlier process count against the bound too: listed once, here.
        self._chunks.extend((p, chunk_records(p)) for p in chunks(self.folder))
        while True:
            batch = self._gather()
            records = [r for r in batch if r is not None][: self.max_records]
            try:
                for group in grouped(records):
                    for start in range(0, len(group), CHUNK_RECORDS):
                        self._write(group[start : start + CHUNK_RECORDS])
            finally:
                for _ in batch:
                    self._queue.task_done()
