"""The service's settings: the library's ``Settings`` plus the knobs of BentoML and uvicorn.

Built once per service process (``serving.service``) and passed down. The framework's own
switches (event loop, request tracing, access log) mean nothing to the library, so they extend
its ``serving`` section here, under the same ``CLEARSIGHT_SERVING__*`` names.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from clearsight.config import ServingSettings, Settings
from serving.garbage import YOUNG_THRESHOLD


class ServerSettings(ServingSettings):
    """``ServingSettings`` and the switches only BentoML and uvicorn read."""

    event_loop: Literal["asyncio", "uvloop"] = Field(
        default="asyncio",
        description="The server's event loop. asyncio's accepts every waiting connection at "
        "once, so overload is shed with 503; uvloop accepts one per loop iteration and lets "
        "connections queue unseen in the kernel (see serving/event_loop.py).",
    )
    forward_runtime: Literal["keras", "litert"] = Field(
        default="litert",
        description="What runs the served model's forward pass (probabilities) with the "
        "TensorFlow backend: LiteRT after a parity check against Keras at warm-up (a fifth of "
        "TensorFlow's cost per one-image call, a lower tail at moderate load; "
        "clearsight/inference/litert.py), or Keras's compiled function. LiteRT falls back to "
        "Keras, with the reason logged, when it is not installed, the model does not convert "
        "or the check fails. Explanations always use Keras; other backends too.",
    )
    gc_young_threshold: int = Field(
        default=YOUNG_THRESHOLD,
        ge=100,
        description="After warm-up, collect Python's youngest garbage generation every this "
        "many new objects (CPython's default is 700). Larger rounds promote far fewer "
        "objects of in-flight requests, so no full collection stops the event loop for "
        "50-100 ms under load (serving/garbage.py has the measurements).",
    )
    trace_requests: bool = Field(
        default=False,
        description="Create BentoML's OpenTelemetry span for every request (for a configured "
        "tracing exporter; it also gives BentoML's X-BentoML-Request-ID header and log "
        "request ids). Off: spans nothing samples cost ~10 % of the event loop under load.",
    )
    access_log: bool = Field(
        default=False,
        description="BentoML's access log (one line per request on stdout). Off by default: "
        "~5 % of the event loop under load; turn on for debugging or where logs are shipped.",
    )


class ServiceSettings(Settings):
    """All settings of a service process: a ``Settings`` whose ``serving`` section also holds
    the server's switches. The library receives it as the ``Settings`` it is."""

    serving: ServerSettings = Field(default_factory=ServerSettings)
