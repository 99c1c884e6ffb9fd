"""The ``monitor`` flow: served traffic against the champion's training reference, hourly.

One library call (``clearsight.pipelines.monitor.run_monitor``) tests the newest window of the
traffic log, logs the report to MLflow (experiment ``clearsight-monitoring``) and writes the
scores the service shows in ``/metrics``. This flow decides what drift means:

- no drift: a Markdown artifact with the scores, Completed;
- drift and labelled data no finished training run has seen (a new data version, or incoming
  batches not yet ingested): it runs the ``retrain`` flow as a subflow (which ingests, trains
  and promotes only if the challenger is better), at most once per
  ``monitoring.retrain_cooldown_hours`` and only when the data or the champion changed since
  the last one (``clearsight.retrain_policy.decide_trigger``); a check inside the cooldown
  is Completed with a note;
- drift and no such data, or a triggered retrain that left nothing behind: an alert, a
  Markdown artifact saying what drifted and what to do, and the run ends **Failed**, so
  Prefect automations and notifications on failed runs fire (retraining on the same data
  cannot answer drift: labels are needed).

Too little traffic to test (fewer than 20 logged images) is not a failure: Completed, with a
note. The deployment (``prefect.yaml``, ``monitor/hourly``) runs it every hour.

    uv run python flows/monitor.py [--window 200]
"""

from __future__ import annotations

import argparse

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State

from clearsight.config import Settings
from clearsight.errors import MonitorError
from clearsight.offline import quiet_output
from clearsight.pipelines.monitor import MonitorOutcome
from clearsight.retrain_policy import Action, TriggerDecision


@task(name="check-drift", cache_policy=NO_CACHE, timeout_seconds=1800)
def check_drift(settings: Settings, window: int | None) -> MonitorOutcome | None:
    """The library's monitor; None when there is too little traffic to test."""
    from clearsight.pipelines.monitor import run_monitor

    try:
        return run_monitor(settings, window)
    except MonitorError as err:
        get_run_logger().info("not tested: %s", err.one_line())
        return None


@task(name="decide-on-drift", cache_policy=NO_CACHE, timeout_seconds=300)
def decide_on_drift(settings: Settings, outcome: MonitorOutcome) -> TriggerDecision:
    """Retrain, alert or wait out the cooldown (the library's rule)."""
    from clearsight.pipelines.retrain_trigger import decide_on_drift as decide

    return decide(settings, outcome.report.drifted, outcome.version)


def report_markdown(outcome: MonitorOutcome, action: str) -> str:
    report = outcome.report
    lines = [
        f"# Monitor: {report.verdict} (v{outcome.version}, {report.window} served images)",
        "",
        f"Reference: {report.reference_source}. Threshold: Benjamini-Hochberg adjusted "
        f"p < {report.alpha:g}. MLflow run: `{outcome.mlflow_run_id}`.",
        "",
        f"**Action:** {action}",
        "",
        "| test | kind | statistic | adjusted p | drift |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {t.name} | {t.kind} | {t.statistic:.3g} | {t.p_adjusted:.2g} | "
        f"{'**yes**' if t.drifted else 'no'} |"
        for t in report.tests
    ]
    lines += [f"\nNote: {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


@flow(name="monitor", timeout_seconds=3 * 3600, log_prints=True)
def monitor(window: int | None = None, retrain_on_drift: bool = True) -> State:
    """Test served traffic for drift; retrain when unseen labelled data exists (with a
    cooldown), else alert."""
    settings = Settings()
    outcome = check_drift(settings, window)
    if outcome is None:
        return Completed(message="too little traffic logged to test for drift")
    report = outcome.report
    if not report.drifted:
        create_markdown_artifact(
            markdown=report_markdown(outcome, "none: no drift"),
            key="monitor",
            description="no drift",
        )
        return Completed(message=f"no drift in {report.window} served images")
    reasons = "; ".join(report.reasons)
    decision = decide_on_drift(settings, outcome)
    if decision.action is Action.RETRAIN and retrain_on_drift:
        from clearsight.pipelines.retrain_trigger import record_trigger, trigger_path
        from flows.retrain import retrain

        assert decision.record is not None
        record_trigger(trigger_path(settings), decision.record)  # before: a crash counts too
        create_markdown_artifact(
            markdown=report_markdown(outcome, f"retraining: {decision.reason}"),
            key="monitor",
            description="drift: retraining",
        )
        print(f"drift ({reasons}); retraining: {decision.reason}")
        path = str(settings.data.path) if settings.data.path else None
        state = retrain(source=settings.data.source, path=path, return_state=True)
        if not state.is_completed():
            return Failed(message=f"drift ({reasons}); the retrain failed: {state.message}")
        return Completed(message=f"drift ({reasons}); retrained")
    if decision.action is Action.COOLDOWN:
        create_markdown_artifact(
            markdown=report_markdown(outcome, f"none yet: {decision.reason}"),
            key="monitor",
            description="drift: retrain in cooldown",
        )
        return Completed(message=f"drift ({reasons}); not retrained: {decision.reason}")
    action = decision.reason
    if decision.action is Action.RETRAIN:
        action = f"retrain_on_drift is off, though a retrain could help: {decision.reason}"
    create_markdown_artifact(
        markdown=report_markdown(outcome, f"ALERT: {action}; see docs/monitoring.md"),
        key="monitor-alert",
        description="drift: alert",
    )
    return Failed(message=f"drift alert: {reasons}")


def main() -> None:
    quiet_output()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=None)
    args = parser.parse_args()
    state = monitor(window=args.window, return_state=True)
    print(state.message)
    raise SystemExit(0 if state.is_completed() else 1)


if __name__ == "__main__":
    main()
