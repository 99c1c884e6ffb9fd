"""Follow a registry alias on a thread: notice a move, load, warm up, check, swap. No restart,
no gap.

The decision of each check lives in the library (``clearsight.inference.follow``, with the
MLflow side in ``clearsight.tracking.candidate``); this adapter only decides *when* to check.
A daemon thread checks the alias every ``poll_seconds`` (one cheap registry call) and at once
when ``POST /admin/reload`` asks. A new version is loaded, warmed up and checked against its
training run's panel while the current model keeps answering, and only then swapped in; the
old model finishes the requests it started. A version that fails its check is refused once
and remembered (log, ``/metadata``, a metric). A registry that cannot answer (connection
refused, timeout, 5xx, a restart) is not a refusal: the thread tries again after a delay that
doubles from ``retry_first_seconds`` up to ``retry_max_seconds`` (even with polling off), so
a promotion made during an outage goes live once the registry is back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from clearsight.config import Settings
from clearsight.inference.follow import Backoff, CheckResult, Follower
from clearsight.inference.live import LiveModel, ModelHolder

if TYPE_CHECKING:
    import keras

    from clearsight.inference.predictor import Predictor
    from clearsight.inference.provenance import Provenance
    from clearsight.task import ImageTask

logger = logging.getLogger("clearsight.serving")

__all__ = ["AliasFollower", "CheckResult"]


class AliasFollower:
    """Keeps ``holder`` on the version the registry alias names, checking on a thread."""

    def __init__(
        self,
        holder: ModelHolder,
        settings: Settings,
        *,
        alias: str,
        poll_seconds: float,
        retry_first_seconds: float,
        retry_max_seconds: float,
        make_live: Callable[[Predictor], LiveModel],
        make_predictor: Callable[[keras.Model, Provenance, str, ImageTask | None], Predictor],
        on_swap: Callable[[LiveModel, LiveModel], None],
        on_refusal: Callable[[str, str], None],
    ) -> None:
        from clearsight.tracking.candidate import registry_follower  # MLflow: only when following

        self.holder = holder
        self.alias = alias
        self.poll_seconds = poll_seconds
        self.follower: Follower = registry_follower(
            settings,
            holder,
            alias=alias,
            make_predictor=make_predictor,
            make_live=make_live,
            on_swap=on_swap,
            on_refusal=on_refusal,
            backoff=Backoff(retry_first_seconds, retry_max_seconds),
        )
        self._wake = threading.Event()
        self._force = False
        self._thread: threading.Thread | None = None

    @property
    def last_check(self) -> CheckResult | None:
        return self.follower.last_check

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="clearsight-follow", daemon=True)
        self._thread.start()

    def wake(self, *, force: bool = False) -> None:
        """Check now instead of at the next poll (what ``POST /admin/reload`` does)."""
        self._force = self._force or force
        self._wake.set()

    def check(self, *, force: bool = False) -> CheckResult:
        """One check now (``POST /admin/reload?wait=true``); ``force`` retries a refused version."""
        return self.follower.check(force=force)

    def _timeout(self) -> float | None:
        """Until the next poll, or sooner/later when a transient failure is due for a retry."""
        poll = self.poll_seconds if self.poll_seconds > 0 else None
        retry = self.follower.retry_in()
        if retry is None:
            return poll
        return retry if poll is None else max(poll, retry)

    def _run(self) -> None:
        while True:
            woken = self._wake.wait(self._timeout())
            self._wake.clear()
            force, self._force = self._force, False
            try:
                self.follower.check(force=force, scheduled=not woken)
            except Exception:  # a bug must not end the loop: log it, retry at the next poll
                logger.exception("checking alias %r failed", self.alias)
