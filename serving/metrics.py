"""The service's Prometheus metrics, in a module of their own.

Why not in ``serving/service.py``: building a bento imports the service module afresh (it reads
the model tag at import, ``serving.bento_store.build_service``), and metrics created at that
import would be registered a second time in the same process (``DuplicateTimeseries``), so a
process could build only one bento. Here they are created once per process.
"""

from __future__ import annotations

import bentoml

EXPLANATION_SECONDS = bentoml.metrics.Histogram(
    name="clearsight_explanation_duration_seconds",
    documentation="Compute time of one explanation method over one request's images.",
    labelnames=["method"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0),
)
FORWARD_BATCH = bentoml.metrics.Histogram(
    name="clearsight_forward_batch_size",
    documentation="Images per forward pass after adaptive batching.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
IMAGES = bentoml.metrics.Counter(
    name="clearsight_images_total",
    documentation="Images answered, by status (ok, degraded, error).",
    labelnames=["status"],
)
SWAPS = bentoml.metrics.Counter(
    name="clearsight_model_swaps_total",
    documentation="Model versions swapped in live (the registry alias moved).",
)
REFUSALS = bentoml.metrics.Counter(
    name="clearsight_model_swap_refusals_total",
    documentation="Model versions refused at swap time (failed to load or failed a check).",
)
LIVE_VERSION = bentoml.metrics.Gauge(
    name="clearsight_model_version",
    documentation="Registry version of the model answering requests now.",
)
SHED = bentoml.metrics.Counter(
    name="clearsight_shed_requests_total",
    documentation="Requests refused with 503 because too many were in flight (load shedding).",
)
