"""Prefect flows over the clearsight library: ingest incoming batches -> validate -> train
-> evaluate and promote -> build the service (after a promotion).

No ML logic lives here: each task is one library call, and the flow adds what an
orchestrator is for: retries with backoff around I/O faults only (``retry_on_io_fault``: a
broken data contract or any other ``ClearsightError`` fails at once, with one report),
timeouts, readable run names, Markdown artifacts, a typed return value. The registry part
(evaluate, promote, build the new champion's bento) holds the ``clearsight-registry`` slot
(``flows/registry_lock.py``), so concurrent retrains move aliases one after the other.
Locally it runs on Prefect's ephemeral API; ``PREFECT_API_URL`` points it at a server.

    uv run clearsight retrain                           # one retrain on the embedded data
    uv run clearsight retrain --source idx --path ~/mnist
    uv run clearsight retrain --source folder --path ~/parts --height 64 --width 64 --channels 3
"""

from __future__ import annotations

from prefect import Task, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.exceptions import TerminationSignal
from prefect.states import State
from prefect.task_engine import TaskRunTimeoutError
from prefect.tasks import exponential_backoff

from clearsight.config import Settings
from clearsight.data.gate import GatedData
from clearsight.data.ingest import IngestResult
from clearsight.errors import ClearsightError, Terminated
from clearsight.offline import quiet_output
from clearsight.pipelines.train import TrainingRun
from clearsight.promotion import Decision
from clearsight.reporting.retrain_summary import RetrainSummary
from clearsight.tracking.data_lineage import DataFreshness
from clearsight.tracking.faults import bounded_http_retries, is_transient
from clearsight.tracking.lifecycle import terminate_gracefully
from flows.registry_lock import persist_leases, registry_slot

# MLflow's own HTTP retries (7, backoff factor 2, 120 s timeout) would take minutes per call
# before a step's retries even start: cap them unless the user chose values.
bounded_http_retries()
quiet_output()  # an entry point: TensorFlow's C++ log and MLflow's bars stay quiet


def is_io_fault(error: BaseException | None) -> bool:
    """Worth another attempt: an I/O fault that can pass (``clearsight.tracking.faults``: an
    ``OSError`` such as a refused connection or a full disk, MLflow's "API request failed"
    wrapping a ``requests`` error, a temporarily unavailable store), raised directly or as the
    cause or context of another error.

    Never a ``ClearsightError`` (a broken data contract, an unreadable source, a diverged
    model: the same input fails the same way again, and each attempt would publish another
    report), nor the task's own timeout (it already spent its whole budget).
    """
    if isinstance(error, TaskRunTimeoutError | ClearsightError):
        return False
    return is_transient(error)


def retry_on_io_fault(task: Task, task_run: TaskRun, state: State) -> bool:
    """Prefect's ``retry_condition_fn``: the failed state carries the exception as its data."""
    return is_io_fault(state.data if isinstance(state.data, BaseException) else None)


# Inputs are arrays and settings objects: never hash them for caching (slow, meaningless).
IO_RETRIES = {
    "retries": 2,
    "retry_delay_seconds": exponential_backoff(backoff_factor=5),
    "retry_condition_fn": retry_on_io_fault,
}


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


@task(
    name="train-model",
    cache_policy=NO_CACHE,
    timeout_seconds=3 * 3600,
    retries=1,
    # Not at once: an outage outlasting MLflow's own HTTP retries (~7 s; a database restart, a
    # server redeploy) would fail the retry too. 30 s let a stopped Postgres come back (measured
    # by docker/faults.sh: a 30 s outage failed both attempts when they ran back to back).
    retry_delay_seconds=30,
    retry_condition_fn=retry_on_io_fault,
)
def train_model(settings: Settings, gated: GatedData) -> TrainingRun:
    """Train and log one complete MLflow run; registers a new model version.

    Safe to retry: the version is registered as the run's last step and removed again if the
    run fails after all, so a failed attempt leaves a FAILED run and no version, and the retry
    one complete run with exactly one version.
    """
    from clearsight.pipelines.train import train_and_assess

    return train_and_assess(settings, gated, verbose=2)


@task(
    name="evaluate-and-promote",
    task_run_name="promote-v{run.version}",
    cache_policy=NO_CACHE,
    timeout_seconds=1800,
    **IO_RETRIES,
)
def evaluate_and_promote(settings: Settings, gated: GatedData, run: TrainingRun) -> Decision:
    """Champion vs challenger on the frozen holdout; aliases move only on a pass."""
    from clearsight.pipelines.promote import evaluate_and_promote as promote

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


@task(name="notify-service", cache_policy=NO_CACHE, timeout_seconds=60)
def notify_service(settings: Settings) -> str:
    """Tell the running service the champion moved (``POST /admin/reload``).

    A warning, never a failure: the service also polls its alias and swaps by itself.
    """
    from clearsight.errors import ServiceError
    from clearsight.inference.client import notify_reload

    try:
        return notify_reload(settings) or "no service configured"
    except ServiceError as err:
        get_run_logger().warning("service not told (it will notice by itself): %s", err)
        return f"not told: {err.one_line()}"


@task(name="publish-summary", cache_policy=NO_CACHE, timeout_seconds=120, **IO_RETRIES)
def publish_summary(summary: RetrainSummary) -> None:
    """The summary as a Prefect artifact and as the MLflow run's description."""
    from clearsight.tracking.run import describe

    create_markdown_artifact(
        markdown=summary.to_markdown(),
        key="retrain-summary",
        description=f"{summary.model} v{summary.version}",
    )
    describe(summary.run_id, summary.to_markdown())


@task(name="ingest-incoming", cache_policy=NO_CACHE, timeout_seconds=1800)
def ingest_incoming(settings: Settings) -> IngestResult:
    """New batches of the incoming folder -> data versions, or quarantine with a report."""
    from prefect.runtime import flow_run

    from clearsight.pipelines.ingest import ingest_pending

    result = ingest_pending(settings, run=f"{flow_run.get_name()} ({flow_run.get_id()})")
    if result.outcomes:
        create_markdown_artifact(
            markdown=result.to_markdown(),
            key="incoming",
            description=f"newest data version {result.after}",
        )
        for outcome in result.outcomes:
            get_run_logger().info("%s", outcome.line())
    return result


@task(name="check-new-data", cache_policy=NO_CACHE, timeout_seconds=300, **IO_RETRIES)
def check_new_data(settings: Settings) -> DataFreshness:
    """Has a finished training run (promoted or not) seen the newest data version? (Then
    retraining on it can only repeat that run.)"""
    from clearsight.tracking.data_lineage import data_freshness

    return data_freshness(settings)


@flow(name="retrain", flow_run_name="retrain-{source}", timeout_seconds=4 * 3600, log_prints=True)
def retrain(
    source: str = "embedded",
    path: str | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    only_if_new_data: bool = False,
    image_height: int | None = None,
    image_width: int | None = None,
    image_channels: int | None = None,
    digit_rules: bool | None = None,
) -> RetrainSummary | None:
    """Validate the data, train a challenger, promote it if it beats the champion, and then
    build the bento that serves the new champion.

    Only the registry part holds the ``clearsight-registry`` slot: validating and training
    (minutes to hours, and they touch no alias) run side by side with other retrains, while
    reading the champion, moving aliases and building the bento for the new champion happen
    one retrain at a time. The build is inside too, so the last bento built always serves the
    current champion.

    Pending incoming batches are ingested first (each one a new data version, or quarantined),
    so the run trains on the newest data version. ``only_if_new_data`` (the nightly
    deployment): when a finished training run already trained on that version (the champion,
    or a challenger that lost), record "skipped: no new data" and return None without
    training.

    ``image_height``, ``image_width``, ``image_channels`` (1 or 3) and ``digit_rules``: the
    dataset's shape and whether the MNIST-only steps apply (None: inferred from the data and
    the source; ``DataSettings``), for a folder of your own images.
    """
    from clearsight.tracking.registry import registry_state

    settings = (
        Settings()
        .override(
            "data",
            source=source,
            path=path,
            image_height=image_height,
            image_width=image_width,
            image_channels=image_channels,
            digit_rules=digit_rules,
        )
        .override("train", epochs=epochs, seed=seed)
    )
    ingest_incoming(settings)
    if only_if_new_data:
        freshness = check_new_data(settings)
        if not freshness.new_data:
            create_markdown_artifact(
                markdown=f"# Retrain skipped: no new data\n\n{freshness.reason()}.\n",
                key="retrain-skipped",
                description="skipped: no new data",
            )
            print(f"skipped: no new data ({freshness.reason()})")
            return None
    gated = validate_data(settings)
    run = train_model(settings, gated)
    with registry_slot():
        decision = evaluate_and_promote(settings, gated, run)
        champion = registry_state(settings)["champion"]
        summary = RetrainSummary.from_parts(
            run, decision, gated.report, champion, _described(gated)
        )
        if decision.promoted:
            summary.service = build_service(settings, decision.challenger_version)
    if decision.promoted and settings.service_url:
        notify_service(settings)
    publish_summary(summary)
    print(summary.to_markdown())
    return summary


def _described(gated: GatedData) -> str | None:
    return gated.data_version.describe() if gated.data_version else None


def run_once(
    source: str = "embedded",
    path: str | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    only_if_new_data: bool = False,
    image_height: int | None = None,
    image_width: int | None = None,
    image_channels: int | None = None,
    digit_rules: bool | None = None,
) -> RetrainSummary | None:
    """One retrain from a command line (``clearsight retrain``, ``make run``); None when
    ``only_if_new_data`` skipped it."""
    persist_leases()  # the temporary server this starts keeps the registry slot's lease on disk
    # SIGTERM: Prefect marks the flow run crashed, then re-sends the signal to the handler
    # that was there before. With Python's default the process would die on the spot and
    # leave the temporary API server running; this one exits cleanly (status 143), which
    # stops it.
    try:
        with terminate_gracefully():
            return retrain(
                source=source,
                path=path,
                epochs=epochs,
                seed=seed,
                only_if_new_data=only_if_new_data,
                image_height=image_height,
                image_width=image_width,
                image_channels=image_channels,
                digit_rules=digit_rules,
            )
    except TerminationSignal as err:
        raise Terminated() from err
