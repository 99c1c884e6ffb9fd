"""The retrain policy on plain values: freshness against any finished run (the lost-challenger
case) and the monitor's trigger over a sequence of hourly checks (persistent drift)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clearsight.retrain_policy import (
    Action,
    DataFreshness,
    LabelledData,
    LastTrigger,
    TrainedRun,
    decide_freshness,
    decide_trigger,
)

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def run_on(data_version: str, verdict: str | None) -> TrainedRun:
    return TrainedRun(f"run-{data_version}", data_version, f"train-{data_version}", verdict)


def test_a_lost_challenger_leaves_no_new_data_until_the_next_version() -> None:
    # The champion trained on dv1, a challenger on dv2 lost: the newest finished run on the
    # newest version dv2 is that challenger's, so a retrain would only repeat it.
    lost = run_on("dv0002", "rejected")
    fresh = decide_freshness("dv0002", lost)
    assert not fresh.new_data
    assert "dv0002" in fresh.reason() and "rejected" in fresh.reason()

    arrived = decide_freshness("dv0003", None)  # dv3 arrives: nobody trained on it
    assert arrived.new_data and "no finished training run has seen dv0003" in arrived.reason()


def test_a_run_on_another_version_says_nothing_about_the_newest() -> None:
    assert decide_freshness("dv0003", run_on("dv0002", "promoted")).new_data


def test_no_data_version_yet_bootstraps() -> None:
    fresh = decide_freshness(None, None)
    assert fresh.new_data and "no data version yet" in fresh.reason()
    # ...but for the monitor an unversioned source is nothing new to answer drift with.
    assert LabelledData(fresh).why() is None


def unseen(newest: str, *incoming: str) -> LabelledData:
    return LabelledData(DataFreshness(newest, None), tuple(incoming))


def seen(newest: str) -> LabelledData:
    return LabelledData(DataFreshness(newest, run_on(newest, "promoted")))


def hourly(
    checks: list[tuple[LabelledData, str]],
    last: LastTrigger | None = None,
    start: datetime = T0,
    cooldown: timedelta = DAY,
) -> tuple[list[Action], LastTrigger | None]:
    """Run the trigger over hourly drifting checks (data, champion version); persist the
    trigger the way the flow does, only when it retrains."""
    actions = []
    for hour, (data, reference) in enumerate(checks):
        decision = decide_trigger(
            drifted=True,
            data=data,
            reference=reference,
            last=last,
            now=start + timedelta(hours=hour),
            cooldown=cooldown,
        )
        assert decision.reason
        if decision.action is Action.RETRAIN:
            assert decision.record is not None
            last = decision.record
        actions.append(decision.action)
    return actions, last


def test_no_drift_does_nothing() -> None:
    decision = decide_trigger(
        drifted=False, data=unseen("dv0002"), reference="1", last=None, now=T0, cooldown=DAY
    )
    assert decision.action is Action.NONE and decision.record is None


def test_drift_without_unseen_data_alerts() -> None:
    actions, last = hourly([(seen("dv0001"), "1")] * 3)
    assert actions == [Action.ALERT] * 3 and last is None


def test_persistent_drift_retrains_once_then_cools_down() -> None:
    # The triggered retrain is slow or failed: dv2 stays unseen for hours.
    actions, last = hourly([(unseen("dv0002"), "1")] * 6)
    assert actions == [Action.RETRAIN] + [Action.COOLDOWN] * 5
    assert last == LastTrigger(T0, "1", "dv0002")


def test_persistent_drift_after_a_retrain_that_saw_the_data_alerts() -> None:
    # The retrain finished on dv2 (promoted or not) and drift goes on: labels are needed.
    actions, _ = hourly([(unseen("dv0002"), "1"), (seen("dv0002"), "2"), (seen("dv0002"), "2")])
    assert actions == [Action.RETRAIN, Action.ALERT, Action.ALERT]


def test_new_data_or_a_new_champion_during_the_cooldown_waits_for_its_end() -> None:
    # Feedback makes a new version every hour and the champion changes: still one retrain
    # per cooldown, not one per hour.
    checks = [(unseen(f"dv{n:04d}"), str(1 + n // 5)) for n in range(2, 30)]
    actions, last = hourly(checks)
    assert actions.count(Action.RETRAIN) == 2
    assert actions[0] is Action.RETRAIN and actions[24] is Action.RETRAIN
    assert set(actions) - {Action.RETRAIN} == {Action.COOLDOWN}
    assert last is not None and last.at == T0 + DAY and last.data == "dv0026"


@pytest.mark.parametrize(
    ("data", "reference", "changed"),
    [
        (unseen("dv0003"), "1", "data dv0002 -> dv0003"),
        (unseen("dv0002", "feedback-17.npz"), "1", "data dv0002 -> dv0002+1 incoming"),
        (unseen("dv0002"), "4", "reference v1 -> v4"),
    ],
)
def test_after_the_cooldown_new_data_or_a_changed_reference_retrains(
    data: LabelledData, reference: str, changed: str
) -> None:
    last = LastTrigger(T0, "1", "dv0002")
    decision = decide_trigger(
        drifted=True, data=data, reference=reference, last=last, now=T0 + DAY, cooldown=DAY
    )
    assert decision.action is Action.RETRAIN and changed in decision.reason
    assert decision.record == LastTrigger(T0 + DAY, reference, data.mark())


def test_after_the_cooldown_nothing_changed_alerts_instead_of_repeating() -> None:
    # The last triggered retrain left no finished run on dv2, and nothing changed since.
    last = LastTrigger(T0, "1", "dv0002")
    actions, after = hourly([(unseen("dv0002"), "1")] * 3, last=last, start=T0 + DAY)
    assert actions == [Action.ALERT] * 3 and after == last


def test_a_zero_cooldown_still_needs_a_change() -> None:
    actions, _ = hourly(
        [(unseen("dv0002"), "1"), (unseen("dv0002"), "1"), (unseen("dv0003"), "1")],
        cooldown=timedelta(0),
    )
    assert actions == [Action.RETRAIN, Action.ALERT, Action.RETRAIN]


def test_the_data_mark_tells_pending_batches_apart() -> None:
    assert unseen("dv0002").mark() == "dv0002"
    one, other = unseen("dv0002", "a.npz"), unseen("dv0002", "b.npz")
    assert one.mark() != other.mark() and one.mark().startswith("dv0002+1 incoming")
    assert unseen("dv0002", "a.npz", "b.npz").mark() == unseen("dv0002", "b.npz", "a.npz").mark()
    assert LabelledData(None, ("a.npz",)).why() == "1 new incoming batch(es)"


def test_a_trigger_round_trips_and_refuses_a_naive_time() -> None:
    trigger = LastTrigger(T0, "3", "dv0004")
    assert LastTrigger.from_dict(trigger.to_dict()) == trigger
    with pytest.raises(ValueError, match="time zone"):
        LastTrigger.from_dict({"at": "2026-11-26T03:00:00", "reference": "3", "data": "dv0004"})
