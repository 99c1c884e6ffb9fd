"""Prefect flows over the clearsight library: validate -> train -> evaluate and promote ->
build the service (after a promotion).

No ML logic lives here: each task is one library call, and the flow adds what an
orchestrator is for: retries with backoff around I/O, timeouts, readable run names,
Markdown artifacts, a typed return value. Locally it runs on Prefect's ephemeral API;
``PREFECT_API_URL`` points it at a server.

    uv run python flows/retrain.py                      # one retrain on the embedded data
    uv run python flows/retrain.py --source idx --path ~/mnist
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# The checkout's root: ``serving/`` (the bento builder) is a sibling adapter, imported from it.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from clearsight.config import Settings
from clearsight.data.gate import GatedData
from clearsight.promotion import Decision
from clearsight.reporting.retrain_summary import RetrainSummary
from clearsight.tracking.run import TrainingRun

# The temporary local server can take 20 s or more to start on a busy 2-core machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

# Inputs are arrays and settings objects: never hash them for caching (slow, meaningless).
IO_RETRIES = {"retries": 2, "retry_delay_seconds": exponential_backoff(backoff_factor=5)}


@task(
    name="validate-data",
    task_run_name="validate-{settings.data.source}",
    cache_policy=NO_CACHE,
    timeout_seconds=900,
    **IO_RETRIES,
)
def validate_data(settings: Settings) -> GatedData:
    """The Great Expectations gate; a failure publishes the report and fails the flow."""
    from clearsight.data.gate import run_data_gate
    from clearsight.errors import DataValidationError

    try:
        gated = run_data_gate(settings)
    except DataValidationError as err:
        create_markdown_artifact(
            markdown=err.report.to_markdown(),
            key="data-contract",
            description="Data contract failed: training did not start",
        )
        raise
    create_markdown_artifact(
        markdown=gated.report.to_markdown(), key="data-contract", description="Data contract passed"
    )
    return gated


@task(name="train-model", cache_policy=NO_CACHE, timeout_seconds=3 * 3600, retries=1)
def train_model(settings: Settings, gated: GatedData) -> TrainingRun:
    """Train and log one complete MLflow run; registers a new model version."""
    from clearsight.tracking.run import run_training

    return run_training(settings, gated, verbose=2)


@task(
    name="evaluate-and-promote",
    task_run_name="promote-v{run.version}",
    cache_policy=NO_CACHE,
    timeout_seconds=1800,
    **IO_RETRIES,
)
def evaluate_and_promote(settings: Settings, gated: GatedData, run: TrainingRun) -> Decision:
    """Champion vs challenger on the frozen holdout; aliases move only on a pass."""
    from clearsight.tracking.registry import evaluate_and_promote as promote

    return promote(settings, gated.splits.holdout, run.version)


@task(
    name="build-service",
    task_run_name="build-service-v{version}",
    cache_policy=NO_CACHE,
    timeout_seconds=900,
    **IO_RETRIES,
)
def build_service(settings: Settings, version: str) -> str:
    """Import the new champion into BentoML and build the bento serving it; its tag."""
    from serving.bento_store import build_service as build

    built = build(settings, version)
    create_markdown_artifact(
        markdown=f"bento `{built.bento_tag}` serves `{built.model_tag}`\n",
        key="service",
        description=f"{built.provenance.name} v{built.provenance.version}",
    )
    return built.bento_tag


@flow(name="retrain", flow_run_name="retrain-{source}", timeout_seconds=4 * 3600, log_prints=True)
def retrain(
    source: str = "embedded",
    path: str | None = None,
    epochs: int | None = None,
    seed: int | None = None,
) -> RetrainSummary:
    """Validate the data, train a challenger, promote it if it beats the champion, and then
    build the bento that serves the new champion."""
    from clearsight.tracking.registry import registry_state

    settings = (
        Settings()
        .override("data", source=source, path=path)
        .override("train", epochs=epochs, seed=seed)
    )
    gated = validate_data(settings)
    run = train_model(settings, gated)
    decision = evaluate_and_promote(settings, gated, run)
    champion = registry_state(settings)["champion"]
    summary = RetrainSummary.from_parts(run, decision, gated.report, champion)
    if decision.promoted:
        summary.service = build_service(settings, decision.challenger_version)
    create_markdown_artifact(
        markdown=summary.to_markdown(),
        key="retrain-summary",
        description=f"{summary.model} v{summary.version}",
    )
    print(summary.to_markdown())
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the retrain flow once.")
    parser.add_argument("--source", default="embedded")
    parser.add_argument("--path")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()
    retrain(source=args.source, path=args.path, epochs=args.epochs, seed=args.seed)


if __name__ == "__main__":
    main()
