"""``clearsight monitor``: served traffic against the champion's training reference."""

from __future__ import annotations

from typing import Annotated

import typer

from clearsight.choices import CHAMPION
from clearsight.cli.app import app
from clearsight.cli.options import ModelRefOpt, load_settings
from clearsight.cli.output import JsonOpt, console, new_table, print_json, step, user_errors

DRIFT_EXIT = 2


@app.command()
def monitor(
    window: Annotated[
        int | None,
        typer.Option(min=20, help="Most recent logged requests to test (default: settings)."),
    ] = None,
    model: ModelRefOpt = CHAMPION,
    no_attributions: Annotated[
        bool, typer.Option("--no-attributions", help="Test inputs and predictions only.")
    ] = False,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help=f"Exit {DRIFT_EXIT} when drift is found.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Test the newest window of the traffic log for drift: per-feature KS, predicted-class
    prior, confidence drop and attribution drift; log the report to MLflow
    (clearsight-monitoring) and the scores for the service's /metrics."""
    with user_errors():
        settings = load_settings()
        if no_attributions:
            settings = settings.override("monitoring", attributions=False)
        from clearsight.cli.framework_noise import import_keras

        import_keras()  # first, so TensorFlow's start-up lines are filtered
        from clearsight.pipelines.monitor import run_monitor

        with step("testing served traffic against the training reference"):
            outcome = run_monitor(settings, window, model)
        report = outcome.report
        if as_json:
            print_json(outcome.to_dict())
        else:
            table = new_table(
                f"{report.window} served images vs v{outcome.version}'s reference "
                f"({report.reference_source})",
                "test",
                "kind",
                "statistic",
                "adjusted p",
                "drift",
            )
            for t in report.tests:
                table.add_row(
                    t.name,
                    t.kind,
                    f"{t.statistic:.3g}",
                    f"{t.p_adjusted:.2g}",
                    "[red]yes[/red]" if t.drifted else "no",
                )
            console.print(table)
            for note in report.notes:
                console.print(f"note: {note}")
            colour = "red" if report.drifted else "green"
            console.print(f"[{colour}]{report.verdict}[/{colour}] (alpha {report.alpha:g})")
            if report.drifted:
                console.print(
                    f"retrain could help: {outcome.newer_data}"
                    if outcome.newer_data
                    else "no labelled data that a finished training run has not seen: "
                    "collect labels (POST /feedback) or see docs/monitoring.md"
                )
            if outcome.mlflow_run_id:
                console.print(
                    f"MLflow run {outcome.mlflow_run_id} ({settings.monitoring.experiment})"
                )
        if fail_on_drift and report.drifted:
            raise typer.Exit(DRIFT_EXIT)
