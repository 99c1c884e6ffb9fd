"""The answer ledger: every image the service answered, by request id, for feedback to name.

The traffic log keeps a *sample* of answered images (``monitoring.log_sample_rate``) for the
drift monitor; feedback needs *every* answer, or a correction of an unsampled prediction could
not be checked. So each answered image also gets one small row here, always: request id, the
SHA-256 of the prepared 28x28 uint8 image (what the model saw, rounded the way feedback stores
it), the time, and the served label, confidence and model version. Feedback is accepted only
for a (request id, digest) pair found here and young enough (``serving.feedback_max_age_s``);
the served label and confidence travel with the feedback batch, so ingest can compare the
given labels with the champion's confident answers without the model.

SQLite (stdlib) in WAL mode, indexed by request id: a lookup is one index probe, and the file
survives a restart. ``record`` never touches the database: it queues the rows, and the
ledger's own thread writes whatever is queued in one transaction and checkpoints (copies the
write-ahead log into the database, with an fsync) every ``CHECKPOINT_EVERY_S``. Why a thread:
``record`` runs on the service's event loop, and an insert there waited on SQLite in the
tail: SQLite's automatic checkpoint stalled every ~300th insert 15-21 ms (measured: 3,000
inserts, p50 0.11 ms, ten over 15 ms); with checkpoints moved to a second connection an
insert still cost the loop 0.1 ms and now and then waited for one (up to 10 ms at 800/s on a
quiet machine; queued: 0.06 ms, at most 2.8 ms; ``benchmarks/ledger_insert.py``). The writer
wakes for the first row after a pause and then lets rows gather for ``GATHER_S``, not once per
row: every wake-up took the GIL from the event loop at its next release, a hand-off that cost
the request path more than the insert itself under load (py-spy at half load). A lookup
hurries the writer and first waits (at most ``FLUSH_WAIT_S``) until the rows queued before it
are written, so feedback sees every answer already sent. The queue is bounded
(``MAX_PENDING_ROWS``): a disk that cannot keep up costs answers, never memory.

It is bounded: rows older than the feedback age and rows beyond ``max_rows`` are deleted every
``PRUNE_EVERY`` inserts. A write that fails (full disk, a locked file) is logged and dropped; it
never fails a prediction: the only consequence is that feedback for that request is refused.
A process killed between ``record`` and the write (at most ``GATHER_S`` and one transaction)
loses those rows the same way.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

FILE = "answers.sqlite"
PRUNE_EVERY = 1000
CHECKPOINT_EVERY_S = 1.0
CATCH_UP_PASSES = 20
MAX_LOG_FRAMES = 4096  # 16 MB of 4 KB pages
MAX_PENDING_ROWS = 50_000  # queued for the writer; beyond it answers are dropped (and counted)
FLUSH_WAIT_S = 2.0  # a lookup waits this long at most for the rows queued before it
GATHER_S = 0.2  # rows gather this long before the writer takes them (unless a lookup hurries)
SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    request_id TEXT NOT NULL,
    row INTEGER NOT NULL,
    digest TEXT NOT NULL,
    time REAL NOT NULL,
    label INTEGER NOT NULL,
    confidence REAL NOT NULL,
    model_version TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_by_request ON answers (request_id);
CREATE INDEX IF NOT EXISTS answers_by_time ON answers (time);
"""


def to_pixels(images: np.ndarray) -> np.ndarray:
    """0-1 float images as the uint8 pixels a feedback batch stores (the same rounding)."""
    return np.rint(np.clip(np.asarray(images, dtype=np.float64), 0, 1) * 255).astype(np.uint8)


def image_digest(pixels: np.ndarray) -> str:
    """SHA-256 of one uint8 image's bytes (C order): grey (H, W) or colour (H, W, 3)."""
    return hashlib.sha256(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()).hexdigest()


@dataclass(frozen=True)
class Answer:
    """One answered image, as the ledger holds it."""

    request_id: str
    row: int
    digest: str
    time: float
    label: int
    confidence: float
    model_version: str


Row = tuple[str, int, str, float, int, float, str]


class AnswerLedger:
    """Append every answer; look answers up by request id. Thread-safe; one per process."""

    def __init__(
        self,
        path: Path,
        max_rows: int,
        max_age_s: float,
        checkpoint_every_s: float = CHECKPOINT_EVERY_S,
    ) -> None:
        self.path = Path(path)
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.checkpoint_every_s = checkpoint_every_s
        self.dropped = 0
        self._lock = threading.Lock()  # the connection: the writer's batches and lookups
        self._inserts = 0
        self._db: sqlite3.Connection | None = None
        self.checkpoint_failing = False  # said once in the log until a checkpoint works again
        self._queue_changed = threading.Condition()  # guards the fields below
        self._pending: list[Row] = []
        self._queued = 0  # rows ever queued, and rows ever written or dropped
        self._done = 0
        self._overflowing = False  # said once in the log until the queue has room again
        self._closing = False
        self._hurry = False  # a lookup waits: write what is queued now
        self._writer: threading.Thread | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA wal_autocheckpoint=0")  # the writer checkpoints on a clock
            db.executescript(SCHEMA)
            self._db = db
        return self._db

    def _start_writer(self) -> None:
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write_loop, name="answer-ledger-writer", daemon=True
            )
            self._writer.start()

    def _write_loop(self) -> None:
        """Write what is queued, one transaction per wake-up; checkpoint every
        ``checkpoint_every_s``. Ends once closing and nothing is left to write."""
        last_checkpoint = time.monotonic()
        while True:
            with self._queue_changed:
                while not self._pending and not self._closing:
                    left = self.checkpoint_every_s - (time.monotonic() - last_checkpoint)
                    if left <= 0 or not self._queue_changed.wait(left):
                        break
                if self._pending:  # let rows gather: one wake-up per batch, not per row
                    self._queue_changed.wait_for(lambda: self._hurry or self._closing, GATHER_S)
                rows, self._pending = self._pending, []
                self._hurry = False
                closing = self._closing
            if rows:
                self._write(rows)
                with self._queue_changed:
                    self._done += len(rows)
                    self._queue_changed.notify_all()
            if time.monotonic() - last_checkpoint >= self.checkpoint_every_s or closing:
                try:
                    with self._lock:
                        self.checkpoint(self._connection())
                except (sqlite3.Error, OSError) as err:  # cannot even open it: said by _write
                    logger.debug("answer ledger: no checkpoint of %s: %s", self.path, err)
                last_checkpoint = time.monotonic()
            if closing and not rows:
                return

    def checkpoint(self, db: sqlite3.Connection, passes: int = CATCH_UP_PASSES) -> bool:
        """Copy the write-ahead log into the database; True once a pass found it all copied
        and nothing added since the pass before.

        SQLite starts the log over (instead of appending) only when an insert begins while
        every frame is already copied. Under steady traffic one pass never gets there: it
        copies the frames that existed when it began while inserts add more (measured: the log
        grew to 86 MB over 6,000 inserts). So passes repeat, each copying only what came
        during the one before, until one finds nothing new; the next insert then starts the
        log over. Inserts that never pause get a blocking RESTART checkpoint once the log
        passes ``MAX_LOG_FRAMES``, which bounds it (they wait for the last few frames and an
        fsync). Never raises: a failed checkpoint (a full disk) is logged once, retried at the
        next interval, and its recovery logged; the log keeps every answer meanwhile."""
        previous = -1
        try:
            for _ in range(passes):
                [(_, logged, copied)] = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                if logged == previous and copied >= logged:
                    break
                previous = logged
            else:
                if previous > MAX_LOG_FRAMES:  # inserts without a pause: make them wait, once
                    db.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
                return False
        except sqlite3.Error as err:
            if not self.checkpoint_failing:  # once per outage (a full disk), not every second
                logger.warning("answer ledger: checkpoint of %s failed: %s", self.path, err)
            self.checkpoint_failing = True
            return False
        if self.checkpoint_failing:
            logger.info("answer ledger: checkpoints of %s work again", self.path)
        self.checkpoint_failing = False
        return True

    def record(
        self,
        request_id: str,
        images: np.ndarray,
        labels: np.ndarray,
        confidences: np.ndarray,
        model_version: str,
        now: float | None = None,
    ) -> None:
        """Queue one row per image of ``images`` (0-1 floats, (N, H, W) or (N, H, W, 3)) for
        the writer; never waits on the database and never raises."""
        stamp = time.time() if now is None else now
        pixels = to_pixels(images)
        rows = [
            (
                request_id,
                i,
                image_digest(pixels[i]),
                stamp,
                int(labels[i]),
                float(confidences[i]),
                model_version,
            )
            for i in range(len(pixels))
        ]
        with self._queue_changed:
            if len(self._pending) + len(rows) > MAX_PENDING_ROWS:
                self.dropped += len(rows)
                if not self._overflowing:
                    logger.warning(
                        "answer ledger: %d answers queued for %s; new answers are dropped until "
                        "the writer catches up",
                        len(self._pending),
                        self.path,
                    )
                self._overflowing = True
                return
            self._overflowing = False
            wake = not self._pending  # the writer sleeps only while nothing is queued
            self._pending.extend(rows)
            self._queued += len(rows)
            if wake:
                self._queue_changed.notify_all()
            self._start_writer()

    def _write(self, rows: list[Row]) -> None:
        """One transaction for ``rows``; prune every ``PRUNE_EVERY`` rows. A failure drops
        them with a warning (the predictions they belong to were answered long ago)."""
        try:
            with self._lock:
                db = self._connection()
                with db:
                    db.executemany("INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                self._inserts += len(rows)
                if self._inserts >= PRUNE_EVERY:
                    self._inserts = 0
                    self._prune(db, max(row[3] for row in rows))
        except (sqlite3.Error, OSError) as err:
            self.dropped += len(rows)
            logger.warning(
                "answer ledger: %d answers not recorded (%s): %s", len(rows), self.path, err
            )

    @property
    def queued_rows(self) -> int:
        """Rows queued and not yet taken by the writer (at most ``MAX_PENDING_ROWS``)."""
        with self._queue_changed:
            return len(self._pending)

    def flush(self, timeout_s: float = FLUSH_WAIT_S) -> bool:
        """Wait until every row queued before this call is written (or dropped); False when
        ``timeout_s`` passed first."""
        with self._queue_changed:
            target = self._queued
            if self._done < target:
                self._hurry = True
                self._queue_changed.notify_all()
            return self._queue_changed.wait_for(lambda: self._done >= target, timeout_s)

    def _prune(self, db: sqlite3.Connection, now: float) -> None:
        """Forget answers older than the feedback age, then all but the newest ``max_rows``."""
        with db:
            db.execute("DELETE FROM answers WHERE time < ?", (now - self.max_age_s,))
            db.execute(
                "DELETE FROM answers WHERE rowid <= "
                "(SELECT rowid FROM answers ORDER BY rowid DESC LIMIT 1 OFFSET ?)",
                (self.max_rows,),
            )

    def lookup(self, request_id: str) -> list[Answer]:
        """Every answered image of one request (empty when unknown or forgotten), once the
        answers queued before the call are written (waiting at most ``FLUSH_WAIT_S``)."""
        self.flush()
        with self._lock:
            cursor = self._connection().execute(
                "SELECT request_id, row, digest, time, label, confidence, model_version "
                "FROM answers WHERE request_id = ? ORDER BY row",
                (request_id,),
            )
            return [Answer(*row) for row in cursor.fetchall()]

    def close(self) -> None:
        """Write what is queued, checkpoint, stop the writer and close the database."""
        with self._queue_changed:
            self._closing = True
            self._queue_changed.notify_all()
        if self._writer is not None:
            self._writer.join(timeout=10)
            self._writer = None
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
        with self._queue_changed:
            self._closing = False
