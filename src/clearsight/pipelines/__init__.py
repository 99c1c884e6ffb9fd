"""The use cases: the steps a flow or a command runs, as plain functions with typed results.

- ``train``: fit on gated data, evaluate on the frozen holdout, draw, write the drift
  reference and the model card, log it all as one MLflow run and register a version;
- ``promote``: score challenger and champion on the same holdout, apply the policy
  (``clearsight.promotion``), move the aliases;
- ``ingest``: incoming batches -> new data versions, or quarantine;
- ``monitor``: the latest window of served traffic against the champion's reference;
- ``retrain_trigger``: what the monitor does about drift (retrain, wait out the cooldown,
  alert), from the data no finished run saw and the last trigger
  (``clearsight.retrain_policy``).

Each one sequences the layers below it (``data``, ``model``, ``explain``, ``reporting``,
``monitoring``, ``promotion``) and hands MLflow's part to ``tracking``, which only writes and
reads MLflow. Prefect flows and the CLI call these, and nothing below calls them.
"""
