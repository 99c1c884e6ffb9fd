"""How much feedback one caller, and everyone together, may send: 413 or 429 before any work.

Feedback turns into files and, later, into training data, so its volume is bounded three ways:

- **per request**: at most ``feedback_max_images`` images (413: retrying cannot help);
- **per caller**: a token bucket counted in images, ``feedback_burst_images`` deep, refilled at
  ``feedback_images_per_minute``; a caller is its client address plus a hash of its token, so
  two clients sharing a token do not share a budget. An empty bucket answers 429 with
  ``Retry-After`` = the seconds until this request's images would fit. Tokens are taken before
  the request is checked against the answer ledger, so guessing request ids costs budget too;
- **pending**: at most ``feedback_max_pending_images`` images waiting in the incoming folder
  for ingest; beyond it 429 with ``Retry-After`` = ``PENDING_RETRY_S`` (an ingest pass takes
  them; then there is room again).

The buckets live in the service process (the service runs one worker); a restart refills them.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from clearsight.errors import RequestError

PENDING_RETRY_S = 60.0
MAX_CALLERS = 10_000  # buckets kept; full (idle) ones are forgotten beyond it


def caller_key(client_address: str | None, token: str | None) -> str:
    """Who is asking: the client address and a short hash of the token (never the token)."""
    digest = hashlib.sha256((token or "").encode()).hexdigest()[:16]
    return f"{client_address or 'unknown'}/{digest}"


@dataclass
class Bucket:
    tokens: float
    updated: float


class FeedbackLimiter:
    """``admit(caller, n_images)`` returns or raises the 413/429 ``RequestError``."""

    def __init__(
        self,
        *,
        max_images: int,
        images_per_minute: float,
        burst_images: int,
        max_pending_images: int,
        pending_images: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_images = max_images
        self.rate = images_per_minute / 60.0
        self.burst = float(burst_images)
        self.max_pending = max_pending_images
        self.pending_images = pending_images
        self.clock = clock
        self._buckets: dict[str, Bucket] = {}
        self._lock = threading.Lock()

    def admit(self, caller: str, n_images: int) -> None:
        """Take ``n_images`` from the caller's bucket, or refuse the request."""
        if n_images > self.max_images:
            raise RequestError(
                413,
                "too_many_images",
                f"{n_images} images in one feedback request; at most {self.max_images}",
            )
        pending = self.pending_images()
        if pending + n_images > self.max_pending:
            raise RequestError(
                429,
                "feedback_backlog",
                f"{pending} feedback images are waiting for ingest (cap "
                f"{self.max_pending}); retry after the next ingest",
                retry_after_s=PENDING_RETRY_S,
            )
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(caller) or Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            self._buckets[caller] = bucket
            if n_images > bucket.tokens:
                wait = (n_images - bucket.tokens) / self.rate
                raise RequestError(
                    429,
                    "rate_limited",
                    f"feedback rate limit: {n_images} images asked, {int(bucket.tokens)} "
                    f"available now ({self.rate * 60:g} per minute, bursts of "
                    f"{int(self.burst)}); retry in {wait:.0f} s",
                    retry_after_s=wait,
                )
            bucket.tokens -= n_images
            if len(self._buckets) > MAX_CALLERS:
                self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        """Drop buckets that have refilled completely: forgetting them changes nothing."""
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self.rate >= self.burst:
                del self._buckets[key]
