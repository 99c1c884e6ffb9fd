"""Links into the MLflow UI that open where a person training models expects.

MLflow 3's UI has two views of an experiment: GenAI (traces, evaluations) and model training
(runs, metrics, models). Without a hint, a first visit lands on the GenAI overview ("Traces
0"), which shows nothing of a Keras training run. Two hints fix that, and the project uses
both: the experiment carries the tag ``mlflow.experimentKind=custom_model_development``
(``tracking.store.configure`` sets it), and every link the project prints carries the UI's
query parameter ``workflowType=machine_learning`` (the UI reads it from the query of its hash
route, e.g. ``http://host:5000/#/experiments/1?workflowType=machine_learning``).

Standard library only: the CLI, the retrain summary and the service's /metadata all use it.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode

# The experiment tag MLflow's UI reads to pick the view, and the value for model training.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
CUSTOM_MODEL_DEVELOPMENT = "custom_model_development"
# The UI's query parameter for the view, and the value of the model-training view.
WORKFLOW_PARAM = "workflowType"
MODEL_TRAINING = "machine_learning"
# Where ``clearsight ui`` serves a local store by default.
LOCAL_UI = "http://127.0.0.1:5000"


def ui_base(tracking_uri: str, local_ui: str = LOCAL_UI) -> str:
    """The UI's address for a tracking URI: a server store is its own UI; a local store
    (SQLite, files) is what ``clearsight ui`` serves."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return local_ui.rstrip("/")


def with_model_training_view(url: str) -> str:
    """``url`` with ``workflowType=machine_learning`` added to the query of its hash route (or
    of the URL itself when it has no hash): '?' when there is no query yet, '&' otherwise; an
    earlier ``workflowType`` is replaced."""
    head, hash_mark, fragment = url.partition("#")
    if hash_mark:
        return f"{head}#{_with_param(fragment)}"
    return _with_param(head)


def _with_param(part: str) -> str:
    path, _, query = part.partition("?")
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != WORKFLOW_PARAM]
    return f"{path}?{urlencode([*pairs, (WORKFLOW_PARAM, MODEL_TRAINING)])}"


def mlflow_ui_link(
    base: str,
    experiment_id: str | None = None,
    run_id: str | None = None,
    *,
    model: str | None = None,
    version: str | None = None,
) -> str:
    """A link into the UI at ``base`` that opens in the model-training view.

    The most specific page the arguments name: a registered model version (``model`` and
    ``version``), a run (``run_id``, under its experiment when ``experiment_id`` is given), an
    experiment, or the experiment list.
    """
    root = base.rstrip("/")
    if model is not None:
        route = f"/models/{quote(model, safe='')}"
        route += f"/versions/{quote(version, safe='')}" if version is not None else ""
    elif run_id is not None and experiment_id is not None:
        route = f"/experiments/{quote(experiment_id, safe='')}/runs/{quote(run_id, safe='')}"
    elif run_id is not None:
        route = f"/runs/{quote(run_id, safe='')}"
    elif experiment_id is not None:
        route = f"/experiments/{quote(experiment_id, safe='')}"
    else:
        route = "/experiments"
    return with_model_training_view(f"{root}/#{route}")
