"""What an operator tunes on a running service, from ``CLEARSIGHT_SERVING__*`` variables.

Kept apart from ``clearsight.config.Settings`` because a served bento needs none of the
training configuration (data, MLflow, promotion), and a container sets only these.
``CLEARSIGHT_API_KEY`` is accepted as a short name for the key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    """Limits and access of the HTTP service; defaults suit one small CPU host."""

    model_config = SettingsConfigDict(env_prefix="CLEARSIGHT_SERVING__", extra="ignore")

    api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("CLEARSIGHT_API_KEY", "CLEARSIGHT_SERVING__API_KEY"),
        description="When set, every route except health and docs needs it "
        "(header 'Authorization: Bearer KEY' or 'X-API-Key: KEY').",
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, gt=0, description="Larger request bodies get 413."
    )
    max_batch_size: int = Field(
        default=64, ge=1, description="Images per adaptive-batching forward pass."
    )
    max_batch_latency_ms: int = Field(
        default=20_000,
        ge=100,
        description="A queued forward pass older than this is refused (503) rather than run.",
    )
    max_in_flight: int = Field(
        default=256,
        ge=1,
        description="Requests admitted at once; the next one gets 503 with Retry-After "
        "(load shedding). 256 is four full forward batches, under a second of work on 2 "
        "cores; 64 starved the admitted requests behind a flood of refusals (measured).",
    )
    event_loop: Literal["asyncio", "uvloop"] = Field(
        default="asyncio",
        description="The server's event loop. asyncio's accepts every waiting connection at "
        "once, so overload is shed with 503; uvloop accepts one per loop iteration and lets "
        "connections queue unseen in the kernel (see serving/event_loop.py).",
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
    mlflow_ui_url: str | None = Field(
        default=None,
        description="Base URL of an MLflow UI (e.g. http://127.0.0.1:5000): /metadata then "
        "links the served model's training run.",
    )
    follow_alias: str | None = Field(
        default=None,
        description="Registry alias to follow (e.g. champion): when it moves, the service "
        "loads, warms up and checks the new version, then swaps to it without a restart. "
        "None: serve the pinned model only (no MLflow needed). `clearsight serve` sets it.",
    )
    poll_seconds: float = Field(
        default=30.0,
        ge=0.0,
        description="How often to check the followed alias; 0: only on POST /admin/reload.",
    )
    default_budget_ms: float | None = Field(
        default=None, gt=0, description="Explanation budget when a request gives none."
    )
