"""Following a registry alias, as a decision: load, warm up, check, swap; refuse; retry later.

What one check of the alias does, apart from threads, HTTP and MLflow (the service's
``serving/live_swap.py`` runs it on a thread; the registry calls are passed in):

- the alias names the live version: nothing to do (``unchanged``);
- it names a new one: load it away from the live model, warm it up, check it against its
  training run's panel (``inference.acceptance``), then swap (``swapped``);
- the version itself is bad (an artifact that does not load, no panel to check it with, a
  warm-up that fails, predictions that differ from the logged ones): ``refused``, and
  remembered, so it is not downloaded again at every poll; ``force`` tries it again;
- the registry could not answer (a refused connection, a timeout, a 5xx, a restarting
  server: ``is_transient``): nothing is remembered about the version, the check is
  ``unreachable`` and scheduled polls wait with a growing delay (``Backoff``) before trying
  again. A short outage therefore delays a promotion; it never blocks it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from clearsight.inference.live import LiveModel, ModelHolder

if TYPE_CHECKING:
    from clearsight.inference.acceptance import Acceptance, Panel
    from clearsight.inference.predictor import Predictor

logger = logging.getLogger("clearsight.serving")

UNCHANGED = "unchanged"
SWAPPED = "swapped"
REFUSED = "refused"
UNREACHABLE = "unreachable"  # a transient failure: tried again later, nothing remembered
WAITING = "waiting"  # a scheduled poll skipped while backing off after a transient failure


class Versioned(Protocol):
    """What the alias names (the registry's description of a version)."""

    @property
    def version(self) -> str: ...


@dataclass(frozen=True)
class Candidate:
    """A loaded version, not yet live: its predictor and the panel to check it with."""

    predictor: Predictor
    panel: Panel


@dataclass(frozen=True)
class CheckResult:
    """What one check of the alias did, and when a transient failure will be retried."""

    outcome: str
    version: str | None
    detail: str
    seconds: float
    retry_in: float | None = None

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {
            "outcome": self.outcome,
            "version": self.version,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
        }
        if self.retry_in is not None:
            body["retry_in_s"] = round(self.retry_in, 1)
        return body


class Backoff:
    """Delays after consecutive transient failures: ``first_s``, doubled each time, at most
    ``max_s``; any answer from the registry (success or refusal) starts over."""

    def __init__(self, first_s: float, max_s: float) -> None:
        self.first_s = first_s
        self.max_s = max(max_s, first_s)
        self.failures = 0
        self._next_at: float | None = None

    def failed(self, now: float) -> float:
        """Record one more failure at ``now``; returns the delay before the next attempt."""
        delay = min(self.max_s, self.first_s * 2.0**self.failures)
        self.failures += 1
        self._next_at = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self._next_at = None

    def remaining(self, now: float) -> float | None:
        """Seconds until the next attempt is due (0: due now), None when nothing is pending."""
        return None if self._next_at is None else max(0.0, self._next_at - now)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class Follower:
    """Keeps ``holder`` on the version the alias names; every outside effect is passed in.

    ``describe(alias)`` reads what the alias names (cheap, no download); ``load(named)`` builds
    a ``Candidate`` (download, predictor); ``verify(candidate)`` runs the acceptance checks;
    ``make_live`` gives a verified predictor its batcher; ``on_swap(old, new)`` and
    ``on_refusal(version, reason)`` tell metrics and the old model's batcher; ``is_transient``
    tells an outage from a bad version; ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        holder: ModelHolder,
        *,
        alias: str,
        describe: Callable[[str], Versioned],
        load: Callable[[Versioned], Candidate],
        verify: Callable[[Candidate], Acceptance],
        make_live: Callable[[Predictor], LiveModel],
        on_swap: Callable[[LiveModel, LiveModel], None],
        on_refusal: Callable[[str, str], None],
        is_transient: Callable[[BaseException], bool],
        backoff: Backoff,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.holder = holder
        self.alias = alias
        self.backoff = backoff
        self._describe = describe
        self._load = load
        self._verify = verify
        self._make_live = make_live
        self._on_swap = on_swap
        self._on_refusal = on_refusal
        self._is_transient = is_transient
        self._clock = clock
        self.refused: dict[str, str] = {}  # version -> reason: not tried again until forced
        self.last_check: CheckResult | None = None
        self._lock = threading.Lock()  # one check at a time (poll thread and /admin/reload)

    def retry_in(self) -> float | None:
        """Seconds until a transient failure is due for another attempt; None: none pending."""
        return self.backoff.remaining(self._clock())

    def check(self, *, force: bool = False, scheduled: bool = False) -> CheckResult:
        """One check. ``scheduled`` (a poll, not a request) waits out the backoff after a
        transient failure; ``force`` tries a refused version again and ignores the backoff."""
        with self._lock:
            start = self._clock()
            result = self._check(force, scheduled, start)
            self.last_check = result
            return result

    def _check(self, force: bool, scheduled: bool, start: float) -> CheckResult:
        def done(outcome: str, version: str | None, detail: str) -> CheckResult:
            return CheckResult(outcome, version, detail, self._clock() - start)

        left = self.backoff.remaining(start)
        if scheduled and not force and left:
            last = self.last_check.detail if self.last_check else "a transient failure"
            return replace(
                done(WAITING, None, f"retrying in {left:.1f} s after: {last}"), retry_in=left
            )
        try:
            named = self._describe(self.alias)
        except Exception as err:  # the registry's own errors (HTTP, database) vary
            if self._is_transient(err):
                return self._retry_later(None, f"cannot read alias {self.alias!r}", err, start)
            detail = f"cannot read alias {self.alias!r}: {first_line(err)}"
            logger.warning("%s", detail)
            return done(UNREACHABLE, None, detail)
        version = named.version
        if version == self.holder.current.version:
            self.backoff.succeeded()
            return done(UNCHANGED, version, f"{self.alias} is v{version}")
        if version in self.refused and not force:
            self.backoff.succeeded()
            return done(REFUSED, version, self.refused[version])
        logger.info("alias %r moved to v%s: loading", self.alias, version)
        stage = "load"
        try:
            candidate = self._load(named)
            stage = "warm up"
            candidate.predictor.warm_up()
            stage = "check"
            verdict = self._verify(candidate)
        except Exception as err:  # load, download, warm-up and check failures
            if self._is_transient(err):
                return self._retry_later(version, f"cannot {stage} v{version}", err, start)
            reason = first_line(err) if stage == "load" else f"{stage} failed: {first_line(err)}"
            return self._refuse(version, reason, done)
        if not verdict.passed:
            return self._refuse(version, verdict.reason(), done)
        new = self._make_live(candidate.predictor)
        old = self.holder.swap(new)
        self.refused.pop(version, None)
        self.backoff.succeeded()
        self._on_swap(old, new)
        logger.info("v%s is live (was v%s): %s", new.version, old.version, verdict.numbers)
        return done(SWAPPED, new.version, f"v{old.version} -> v{new.version}")

    def _retry_later(
        self, version: str | None, what: str, error: BaseException, start: float
    ) -> CheckResult:
        now = self._clock()
        delay = self.backoff.failed(now)
        detail = f"{what}: {first_line(error)} (transient; retrying in {delay:.1f} s)"
        logger.warning("%s", detail)
        return CheckResult(UNREACHABLE, version, detail, now - start, retry_in=delay)

    def _refuse(
        self, version: str, reason: str, done: Callable[[str, str | None, str], CheckResult]
    ) -> CheckResult:
        self.refused[version] = reason
        self.backoff.succeeded()  # the registry answered; the version is what failed
        self.holder.refuse(version, reason)
        self._on_refusal(version, reason)
        logger.error(
            "refused v%s, still serving v%s: %s", version, self.holder.current.version, reason
        )
        return done(REFUSED, version, reason)
