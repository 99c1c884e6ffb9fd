"""The follower's thread: when it checks (polls, wake-ups, retries after an outage), with the
registry faked (``tests/inference/test_follow.py``); fast, no MLflow call is made."""

from __future__ import annotations

import time

from clearsight.config import Settings
from clearsight.inference.follow import SWAPPED, Backoff, Follower
from clearsight.inference.live import ModelHolder
from serving.live_swap import AliasFollower
from tests.inference.test_follow import FakePredictor, Registry, live, transient


def follower(poll_seconds: float, registry: Registry) -> AliasFollower:
    holder = ModelHolder(live(FakePredictor("1")), following="champion")
    adapter = AliasFollower(
        holder,
        settings=Settings(),
        alias="champion",
        poll_seconds=poll_seconds,
        retry_first_seconds=0.05,
        retry_max_seconds=0.2,
        make_live=live,
        make_predictor=lambda *args: None,
        on_swap=lambda old, new: None,
        on_refusal=lambda version, reason: None,
    )
    adapter.follower = Follower(  # the same decision, with the registry faked
        holder,
        alias="champion",
        describe=registry.describe,
        load=registry.load,
        verify=registry.verify,
        make_live=live,
        on_swap=lambda old, new: None,
        on_refusal=lambda version, reason: None,
        is_transient=transient,
        backoff=adapter.follower.backoff,
    )
    return adapter


def wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_wait_is_the_poll_or_the_backoff_whichever_is_longer() -> None:
    adapter = follower(30.0, Registry())
    assert adapter._timeout() == 30.0
    adapter.follower.backoff = Backoff(100.0, 100.0)
    adapter.follower.backoff.failed(time.monotonic())
    assert 99.0 < adapter._timeout() <= 100.0
    assert follower(0.0, Registry())._timeout() is None  # polling off: only woken


def test_with_polling_off_an_outage_is_still_retried_until_the_swap() -> None:
    registry = Registry(alias_names="2", down=True)
    adapter = follower(0.0, registry)
    adapter.start()
    adapter.wake()  # one request (the flow's reload) while the registry is down
    assert wait_for(lambda: adapter.follower.backoff.failures >= 2), registry.calls
    registry.down = False  # no further wake: the thread retries by itself
    assert wait_for(lambda: adapter.holder.current.version == "2"), registry.calls
    assert adapter.last_check is not None and adapter.last_check.outcome == SWAPPED
    assert adapter.holder.refusals == []
