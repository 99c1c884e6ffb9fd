"""Follow a registry alias: notice a move, load, warm up, check, swap. No restart, no gap.

A daemon thread checks the alias every ``poll_seconds`` (one cheap registry call) and at once
when ``POST /admin/reload`` asks. A new version is loaded from MLflow into a temporary folder,
wrapped in its own ``Predictor`` and batcher, warmed up (every forward and gradient path
compiled, each method's cost measured) and checked against its training run's panel
(``clearsight.inference.acceptance``) while the current model keeps answering. Only then is
it swapped in; the old model finishes the requests it started and its batcher is closed
after the traffic timeout. A version that fails its check is refused once and remembered
(log, ``/metadata``, a metric); the service keeps what it had. Registry outages are logged
and retried at the next poll: the service never stops answering because MLflow went away.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from clearsight.config import Settings
from clearsight.errors import ClearsightError, RegistryError
from clearsight.inference import acceptance
from clearsight.inference.live import LiveModel, ModelHolder
from clearsight.inference.provenance import Provenance

if TYPE_CHECKING:
    import keras

    from clearsight.inference.predictor import Predictor
    from clearsight.tracking.registry import VersionInfo

logger = logging.getLogger("clearsight.serving")


@dataclass(frozen=True)
class CheckResult:
    """What one check of the alias did: unchanged, swapped, refused or unreachable."""

    outcome: str
    version: str | None
    detail: str
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {
            "outcome": self.outcome,
            "version": self.version,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
        }


class AliasFollower:
    """Keeps ``holder`` on the version the registry alias names."""

    def __init__(
        self,
        holder: ModelHolder,
        settings: Settings,
        *,
        alias: str,
        poll_seconds: float,
        make_live: Callable[[Predictor], LiveModel],
        make_predictor: Callable[[keras.Model, Provenance, str], Predictor],
        on_swap: Callable[[LiveModel, LiveModel], None],
        on_refusal: Callable[[str, str], None],
    ) -> None:
        self.holder = holder
        self.alias = alias
        self.poll_seconds = poll_seconds
        self._make_live = make_live
        self._make_predictor = make_predictor
        self._on_swap = on_swap
        self._on_refusal = on_refusal
        self._settings = settings
        self._refused: dict[str, str] = {}  # version -> reason: not retried until forced
        self._check_lock = threading.Lock()
        self._wake = threading.Event()
        self._force = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_check: CheckResult | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="clearsight-follow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self, *, force: bool = False) -> None:
        """Check now instead of at the next poll (what ``POST /admin/reload`` does)."""
        self._force = self._force or force
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_seconds if self.poll_seconds > 0 else None)
            self._wake.clear()
            if self._stop.is_set():
                return
            force, self._force = self._force, False
            try:
                self.check(force=force)
            except Exception:  # a bug must not end the loop: log it, retry at the next poll
                logger.exception("checking alias %r failed", self.alias)

    # -- one check -----------------------------------------------------------------------
    def check(self, *, force: bool = False) -> CheckResult:
        """Compare the alias with the live version; swap when it moved and the new one passes.

        ``force`` retries a version refused before (e.g. after its artifact was repaired).
        """
        with self._check_lock:
            start = time.perf_counter()
            result = self._check(force, start)
            self.last_check = result
            return result

    def _check(self, force: bool, start: float) -> CheckResult:
        from clearsight.tracking.registry import describe_version

        def done(outcome: str, version: str | None, detail: str) -> CheckResult:
            return CheckResult(outcome, version, detail, time.perf_counter() - start)

        try:
            info = describe_version(self._settings, self.alias)
        except ClearsightError as err:
            logger.warning("cannot read alias %r: %s", self.alias, err.one_line())
            return done("unreachable", None, err.one_line())
        except Exception as err:  # the registry's own errors (HTTP, database) vary
            logger.warning("cannot read alias %r: %s", self.alias, err)
            return done("unreachable", None, str(err).splitlines()[0] if str(err) else repr(err))
        if info.version == self.holder.current.version:
            return done("unchanged", info.version, f"{self.alias} is v{info.version}")
        if info.version in self._refused and not force:
            return done("refused", info.version, self._refused[info.version])
        logger.info("alias %r moved to v%s: loading", self.alias, info.version)
        try:
            predictor, verdict = self._prepare(info)
        except Exception as err:  # load, download and warm-up failures all mean: refuse
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            return self._refuse(info.version, reason, done)
        if not verdict.passed:
            return self._refuse(info.version, verdict.reason(), done)
        new = self._make_live(predictor)
        old = self.holder.swap(new)
        self._refused.pop(info.version, None)
        self._on_swap(old, new)
        logger.info("v%s is live (was v%s): %s", new.version, old.version, verdict.numbers)
        return done("swapped", new.version, f"v{old.version} -> v{new.version}")

    def _refuse(self, version: str, reason: str, done: Callable[..., CheckResult]) -> CheckResult:
        self._refused[version] = reason
        self.holder.refuse(version, reason)
        self._on_refusal(version, reason)
        logger.error(
            "refused v%s, still serving v%s: %s", version, self.holder.current.version, reason
        )
        return done("refused", version, reason)

    def _prepare(self, info: VersionInfo) -> tuple[Predictor, acceptance.Acceptance]:
        """Load, warm up and check one version, away from the live model."""
        from clearsight.tracking.registry import load_model_ref, load_run_file

        with tempfile.TemporaryDirectory(prefix="clearsight-swap-") as tmp:
            model, version = load_model_ref(self._settings, info.version, Path(tmp) / "model")
            panel_file = (
                load_run_file(self._settings, info.run_id, acceptance.ARTIFACT, Path(tmp))
                if info.run_id
                else None
            )
            if panel_file is None:
                raise RegistryError(f"v{version} has no {acceptance.ARTIFACT} to check it with")
            panel = acceptance.Panel.load(panel_file)
        provenance = Provenance.from_run_tags(
            info.name,
            version,
            info.run_id,
            info.run_tags,
            registry_alias=self.alias,
            imported_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        predictor = self._make_predictor(model, provenance, f"models:/{info.name}/{version}")
        predictor.warm_up()
        verdict = acceptance.verify(
            predictor.model, panel, self._settings.promotion.max_completeness_gap
        )
        return predictor, verdict
