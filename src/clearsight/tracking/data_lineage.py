"""Whether newer data exists than any finished training run has seen.

A retrain on data that a finished run already trained on can only repeat that run's result:
a tie with a champion trained on it, or the same loss as a challenger that lost on it.
``data_freshness`` reads the newest data version of the configured source and, in one MLflow
search, the newest FINISHED run of the training experiment whose ``data_version`` tag names it
(promoted or not: the tag comes from ``tracking.run.log_data_version``); the decision itself
is ``clearsight.retrain_policy.decide_freshness``.
"""

from __future__ import annotations

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from clearsight.config import Settings
from clearsight.data.sources import load
from clearsight.data.versions import VersionStore
from clearsight.retrain_policy import DataFreshness, TrainedRun, decide_freshness
from clearsight.tracking.store import configure

__all__ = ["DataFreshness", "data_freshness", "newest_run_on"]

TAG = "data_version"


def newest_run_on(settings: Settings, data_version: str) -> TrainedRun | None:
    """The newest finished run of the training experiment that trained on ``data_version``
    (any model version, promoted or not); None when none did."""
    experiment_id = configure(settings)
    quoted = data_version.replace("'", "")  # ids are ``dv0003``; never let a quote through
    runs = MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.{TAG} = '{quoted}' and attributes.status = 'FINISHED'",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    if not runs:
        return None
    run = runs[0]
    tags = run.data.tags
    return TrainedRun(
        run_id=run.info.run_id,
        data_version=tags[TAG],
        run_name=run.info.run_name or "",
        verdict=tags.get("promotion.verdict"),
    )


def data_freshness(settings: Settings) -> DataFreshness:
    """Newest data version of ``settings.data`` against the runs that trained on it."""
    base = load(settings.data)
    newest = VersionStore.of(settings).latest_id(base.digest)
    trained = newest_run_on(settings, newest) if newest is not None else None
    return decide_freshness(newest, trained)
