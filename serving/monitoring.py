"""The service's side of monitoring: out-of-distribution counts and drift scores in /metrics,
the traffic log, and the per-image bounds of the model being served.

The bounds come from the served version's own training reference
(``monitoring/reference.npz`` of its MLflow run) when the service follows the registry
(MLflow is there); a pinned bento, which runs without MLflow, uses the default bounds shipped
with the library for the task's channels (``default_bounds(channels=...)``), and the log says
which. The monitor (``clearsight
monitor`` or the ``monitor`` flow) writes its latest scores (``DriftScores``, the file
``<traffic_dir>/drift.json``); a daemon thread here reads that record into gauges every few
seconds, so a scrape never reads a file.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import bentoml

from clearsight.config import Settings
from clearsight.errors import RecordError
from clearsight.inference.provenance import Provenance
from clearsight.monitoring.answers import FILE as ANSWERS_FILE
from clearsight.monitoring.answers import AnswerLedger
from clearsight.monitoring.bounds import Bounds, OutOfBounds
from clearsight.monitoring.reference import ARTIFACT
from clearsight.monitoring.requests import RequestMonitor, default_bounds
from clearsight.monitoring.scores import SCORES_FILE, DriftScores
from clearsight.monitoring.traffic import TrafficLog
from clearsight.task import DIGITS, ImageTask

logger = logging.getLogger("clearsight.serving")

SCORES_REFRESH_S = 10.0

OUT_OF_DISTRIBUTION = bentoml.metrics.Counter(
    name="clearsight_out_of_distribution_total",
    documentation="Answered images outside the training reference's per-image bounds, by "
    "failed check (an image failing two checks counts once per check).",
    labelnames=["check"],
)
OUT_OF_DISTRIBUTION_IMAGES = bentoml.metrics.Counter(
    name="clearsight_out_of_distribution_images_total",
    documentation="Answered images that failed at least one out-of-distribution check.",
)
DRIFT_SCORE = bentoml.metrics.Gauge(
    name="clearsight_drift_score",
    documentation="The monitor's latest -log10 adjusted p-value per drift test "
    "(2 = the default alpha 0.01); from the monitor's DriftScores (<traffic_dir>/drift.json).",
    labelnames=["test"],
    multiprocess_mode="livemostrecent",  # one value, not one per worker pid
)
DRIFT_DETECTED = bentoml.metrics.Gauge(
    name="clearsight_drift_detected",
    documentation="1 when the monitor's latest window drifted from the training reference.",
    multiprocess_mode="livemostrecent",
)


class ServiceMonitoring:
    """One per service process: the traffic log and the drift-score refresher."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        assert self.settings.traffic_dir is not None
        config = self.settings.monitoring
        self.traffic_dir: Path = self.settings.traffic_dir
        self.log = TrafficLog(self.traffic_dir, config.log_sample_rate, config.log_max_records)
        # Every answer (not a sample): what /feedback is checked against.
        self.answers = AnswerLedger(
            self.traffic_dir / ANSWERS_FILE,
            settings.serving.answer_ledger_max_rows,
            settings.serving.feedback_max_age_s,
        )
        self._scores_mtime = 0.0
        self._refresher: threading.Thread | None = None

    def monitor_for(
        self, provenance: Provenance, follows_registry: bool, task: ImageTask = DIGITS
    ) -> RequestMonitor:
        """The request monitor of one served version (bounds from its training reference,
        else the shipped defaults for ``task``'s channels)."""
        bounds = self._run_bounds(provenance) if follows_registry else None
        if bounds is None:
            bounds = fallback_bounds(task)
        logger.info(
            "out-of-distribution bounds for v%s: %s; traffic log %s",
            provenance.version,
            bounds.source,
            f"{self.traffic_dir} (sample rate {self.log.sample_rate:g})"
            if self.log.enabled
            else "off",
        )
        self._start_refresher()
        return RequestMonitor(
            bounds,
            self.log,
            provenance.version,
            on_checks=count_checks,
            answers=self.answers,
            run_id=provenance.run_id,
        )

    def _run_bounds(self, provenance: Provenance) -> Bounds | None:
        if not provenance.run_id:
            return None
        try:
            from clearsight.tracking.monitoring import logged_reference

            reference = logged_reference(self.settings, provenance.run_id)
            return reference.bounds if reference is not None else None
        except Exception:  # MLflow unreachable, an old run: fall back, never fail a load
            logger.warning("cannot read v%s's %s", provenance.version, ARTIFACT, exc_info=True)
            return None

    # -- drift scores ---------------------------------------------------------------------
    def _start_refresher(self) -> None:
        if self._refresher is None:
            self._refresher = threading.Thread(
                target=self._refresh_forever, name="clearsight-drift-scores", daemon=True
            )
            self._refresher.start()

    def _refresh_forever(self) -> None:
        while True:
            self.refresh_scores()
            time.sleep(SCORES_REFRESH_S)

    def refresh_scores(self) -> None:
        """Copy the monitor's latest ``DriftScores`` into the gauges when the file changed
        (written atomically by the monitor, so it is whole or absent). A record of another
        version is refused with one warning per file change, and the gauges keep their
        values."""
        path = self.traffic_dir / SCORES_FILE
        try:
            mtime = path.stat().st_mtime
            if mtime == self._scores_mtime:
                return
            self._scores_mtime = mtime
            scores = DriftScores.read(self.traffic_dir)
        except OSError:
            return
        except RecordError as err:
            logger.warning("drift scores not shown: %s", err.one_line())
            return
        for test, score in scores.tests.items():
            DRIFT_SCORE.labels(test=test).set(score)
        DRIFT_DETECTED.set(float(scores.drifted))


def fallback_bounds(task: ImageTask) -> Bounds:
    """The shipped default bounds where they fit ``task`` (28x28 grey digits); empty bounds
    for any other task, whose own bounds come with its monitoring reference."""
    return default_bounds(task.channels, task=task)


def count_checks(failed: list[list[OutOfBounds]]) -> None:
    """The out-of-distribution counters, from each reviewed batch's failed checks."""
    for checks in failed:
        if checks:
            OUT_OF_DISTRIBUTION_IMAGES.inc()
        for check in checks:
            OUT_OF_DISTRIBUTION.labels(check=check.feature).inc()
