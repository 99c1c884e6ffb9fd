"""The alias follower's decisions, with fakes for the registry, the model and the clock:
load, warm up, check, swap; refuse and remember; an outage retried with backoff; force."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from clearsight.inference.acceptance import Acceptance
from clearsight.inference.follow import (
    REFUSED,
    SWAPPED,
    UNCHANGED,
    UNREACHABLE,
    WAITING,
    Backoff,
    Candidate,
    Follower,
)
from clearsight.inference.live import LiveModel, ModelHolder


class Outage(ConnectionError):
    """What a registry that went away raises (an ``OSError``: transient)."""


class BadArtifact(ValueError):
    """What a version whose artifact does not load raises (not transient)."""


def transient(error: BaseException) -> bool:
    return isinstance(error, OSError)


class FakePredictor:
    def __init__(self, version: str, *, warm_up_fails: bool = False) -> None:
        self.provenance = SimpleNamespace(version=version)
        self.model = f"model v{version}"
        self.warm_up_fails = warm_up_fails
        self.warmed = False

    def warm_up(self) -> None:
        if self.warm_up_fails:
            raise RuntimeError("XLA compilation failed")
        self.warmed = True


@dataclass
class Registry:
    """The alias, what each version does on load, and a log of every call in order."""

    alias_names: str = "1"
    down: bool = False  # nothing answers
    downloads_down: bool = False  # the alias reads, the download fails (it went away midway)
    broken: set[str] = field(default_factory=set)  # versions whose artifact does not load
    cold: set[str] = field(default_factory=set)  # versions whose warm-up fails
    mismatched: set[str] = field(default_factory=set)  # versions that fail acceptance
    calls: list[str] = field(default_factory=list)

    def describe(self, alias: str) -> SimpleNamespace:
        self.calls.append(f"describe {alias}")
        if self.down:
            raise Outage("Max retries exceeded: connection refused")
        return SimpleNamespace(version=self.alias_names)

    def load(self, named: SimpleNamespace) -> Candidate:
        self.calls.append(f"load {named.version}")
        if self.down or self.downloads_down:
            raise Outage("connection reset while downloading")
        if named.version in self.broken:
            raise BadArtifact(f"cannot load clearsight-cnn v{named.version}: bad zip file")
        predictor = FakePredictor(named.version, warm_up_fails=named.version in self.cold)
        return Candidate(predictor, panel=f"panel v{named.version}")  # type: ignore[arg-type]

    def verify(self, candidate: Candidate) -> Acceptance:
        version = candidate.predictor.provenance.version
        self.calls.append(f"verify {version} warmed={candidate.predictor.warmed}")
        if version in self.mismatched:
            return Acceptance(False, ["predictions on the panel differ from the logged ones"])
        return Acceptance(True, numbers={"max_probability_difference": 0.0})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    registry: Registry
    holder: ModelHolder
    follower: Follower
    clock: Clock
    swaps: list[tuple[str, str]]
    refusals: list[tuple[str, str]]


def live(predictor: FakePredictor) -> LiveModel:
    return LiveModel(predictor, forward=None)  # type: ignore[arg-type]


@pytest.fixture
def rig() -> Rig:
    registry, clock = Registry(), Clock()
    holder = ModelHolder(live(FakePredictor("1")), following="champion")
    swaps: list[tuple[str, str]] = []
    refusals: list[tuple[str, str]] = []
    follower = Follower(
        holder,
        alias="champion",
        describe=registry.describe,
        load=registry.load,
        verify=registry.verify,
        make_live=live,
        on_swap=lambda old, new: swaps.append((old.version, new.version)),
        on_refusal=lambda version, reason: refusals.append((version, reason)),
        is_transient=transient,
        backoff=Backoff(first_s=2.0, max_s=10.0),
        clock=clock,
    )
    return Rig(registry, holder, follower, clock, swaps, refusals)


def test_an_unmoved_alias_loads_nothing(rig: Rig) -> None:
    result = rig.follower.check(scheduled=True)
    assert (result.outcome, result.version) == (UNCHANGED, "1")
    assert rig.registry.calls == ["describe champion"]
    assert rig.swaps == [] and rig.holder.swaps == 0


def test_a_moved_alias_is_loaded_warmed_up_checked_then_swapped(rig: Rig) -> None:
    rig.registry.alias_names = "2"
    result = rig.follower.check(scheduled=True)
    assert (result.outcome, result.version, result.detail) == (SWAPPED, "2", "v1 -> v2")
    # The check ran on a warmed-up model, and only then did it go live.
    assert rig.registry.calls == ["describe champion", "load 2", "verify 2 warmed=True"]
    assert rig.holder.current.version == "2" and rig.swaps == [("1", "2")]
    assert rig.follower.check().outcome == UNCHANGED


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("broken", "cannot load clearsight-cnn v2: bad zip file"),
        ("cold", "warm up failed: XLA compilation failed"),
        ("mismatched", "predictions on the panel differ from the logged ones"),
    ],
)
def test_a_bad_version_is_refused_once_and_remembered(rig: Rig, fault: str, reason: str) -> None:
    getattr(rig.registry, fault).add("2")
    rig.registry.alias_names = "2"
    result = rig.follower.check(scheduled=True)
    assert (result.outcome, result.version, result.detail) == (REFUSED, "2", reason)
    assert rig.holder.current.version == "1", "the old model keeps serving"
    assert rig.refusals == [("2", reason)] and rig.holder.last_refusal.version == "2"
    calls = len(rig.registry.calls)
    rig.clock.now += 60
    again = rig.follower.check(scheduled=True)
    assert (again.outcome, again.detail) == (REFUSED, reason)
    assert rig.registry.calls[calls:] == ["describe champion"], "not loaded again"
    assert len(rig.refusals) == 1, "refused once, not at every poll"
    assert rig.follower.retry_in() is None, "a refusal is not retried"


def test_force_tries_a_refused_version_again(rig: Rig) -> None:
    rig.registry.broken.add("2")
    rig.registry.alias_names = "2"
    assert rig.follower.check().outcome == REFUSED
    rig.registry.broken.clear()  # the artifact was repaired
    assert rig.follower.check().outcome == REFUSED, "remembered without force"
    result = rig.follower.check(force=True)
    assert result.outcome == SWAPPED and rig.holder.current.version == "2"
    assert "2" not in rig.follower.refused


def test_an_outage_while_loading_is_retried_with_backoff_not_refused(rig: Rig) -> None:
    rig.registry.alias_names = "2"
    rig.registry.downloads_down = True
    result = rig.follower.check(scheduled=True)
    assert (result.outcome, result.version) == (UNREACHABLE, "2")
    assert "transient" in result.detail and result.retry_in == 2.0
    assert rig.refusals == [] and rig.holder.refusals == [] and rig.follower.refused == {}
    rig.registry.downloads_down, rig.registry.down = False, True  # then nothing answers

    # Polls inside the backoff do not touch the registry; then each failure doubles the delay.
    calls = len(rig.registry.calls)
    rig.clock.now += 1.0
    waiting = rig.follower.check(scheduled=True)
    assert waiting.outcome == WAITING and waiting.retry_in == pytest.approx(1.0)
    assert len(rig.registry.calls) == calls
    delays = []
    for _ in range(4):
        rig.clock.now += rig.follower.retry_in() or 0.0
        delays.append(rig.follower.check(scheduled=True).retry_in)
    assert delays == [4.0, 8.0, 10.0, 10.0], "doubling, capped at max_s"

    # The registry is back: the next due poll loads, checks and swaps, with no force.
    rig.registry.down = False
    rig.clock.now += rig.follower.retry_in() or 0.0
    result = rig.follower.check(scheduled=True)
    assert result.outcome == SWAPPED and rig.holder.current.version == "2"
    assert rig.follower.retry_in() is None and rig.follower.backoff.failures == 0
    assert rig.refusals == []


def test_an_unreadable_alias_is_retried_and_a_request_skips_the_backoff(rig: Rig) -> None:
    rig.registry.down = True
    first = rig.follower.check(scheduled=True)
    assert first.outcome == UNREACHABLE and first.version is None and first.retry_in == 2.0
    rig.registry.down = False
    rig.registry.alias_names = "2"
    assert rig.follower.check(scheduled=True).outcome == WAITING
    # POST /admin/reload (not scheduled) asks now: it does not wait for the backoff.
    assert rig.follower.check().outcome == SWAPPED


def test_a_refusal_does_not_stop_a_later_version(rig: Rig) -> None:
    rig.registry.mismatched.add("2")
    rig.registry.alias_names = "2"
    assert rig.follower.check().outcome == REFUSED
    rig.registry.alias_names = "3"
    assert rig.follower.check().outcome == SWAPPED and rig.holder.current.version == "3"
    assert rig.swaps == [("1", "3")]


def test_backoff_doubles_up_to_its_cap_and_starts_over() -> None:
    backoff = Backoff(first_s=5.0, max_s=300.0)
    assert backoff.remaining(0.0) is None
    assert [backoff.failed(0.0) for _ in range(8)] == [5, 10, 20, 40, 80, 160, 300, 300]
    assert backoff.remaining(100.0) == 200.0 and backoff.remaining(400.0) == 0.0
    backoff.succeeded()
    assert backoff.remaining(0.0) is None and backoff.failed(0.0) == 5.0
