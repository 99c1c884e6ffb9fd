"""The one request pipeline of the service.

Every route that uses the model goes through ``ServiceState``: ``live()`` reads the live model
once (a swap mid-request changes nothing for that request) and refuses while warming up;
``predict()`` (the typed BentoML APIs and ``POST /predict``) then runs the library's
``Predictor`` and records metrics, and OIP inference runs its tensors on the same ``live()``
model. Routes reach it through ``current_state()``, typed, rather than an untyped service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import bentoml

from clearsight.data.feedback import pending_images
from clearsight.errors import RequestError
from clearsight.inference.feedback_limits import FeedbackLimiter
from serving.metrics import EXPLANATION_SECONDS, IMAGES

if TYPE_CHECKING:
    from clearsight.inference.live import LiveModel, ModelHolder
    from clearsight.inference.schemas import PredictRequest, PredictResponse
    from serving.live_swap import AliasFollower
    from serving.monitoring import ServiceMonitoring
    from serving.settings import ServiceSettings

NOT_READY = RequestError(503, "not_ready", "the model is warming up; retry shortly")


@dataclass
class ServiceState:
    """What a running service holds: its settings, the live model, the follower, monitoring."""

    settings: ServiceSettings
    holder: ModelHolder
    monitoring: ServiceMonitoring
    follower: AliasFollower | None = None
    _feedback_limiter: FeedbackLimiter | None = field(default=None, repr=False)

    def feedback_limiter(self) -> FeedbackLimiter:
        """Per-caller feedback limits and the backlog cap, from the serving settings."""
        if self._feedback_limiter is None:
            config = self.settings.serving
            folder = self.settings.incoming_dir
            assert folder is not None
            self._feedback_limiter = FeedbackLimiter(
                max_images=config.feedback_max_images,
                images_per_minute=config.feedback_images_per_minute,
                burst_images=config.feedback_burst_images,
                max_pending_images=config.feedback_max_pending_images,
                pending_images=lambda: pending_images(folder),
            )
        return self._feedback_limiter

    def live(self) -> LiveModel:
        """The model that answers this request, read once; 503 until it has warmed up."""
        live = self.holder.current
        if not live.predictor.ready:
            raise NOT_READY
        return live

    async def predict(self, request: PredictRequest) -> PredictResponse:
        """Predictions (and explanations) of the live model, observed for /metrics."""
        live = self.live()
        response = await live.predictor.predict(request, live.forward)
        self.observe(response)
        return response

    def observe(self, response: PredictResponse) -> None:
        """Per-method explanation latency and per-status image counts (out-of-distribution
        counts come from the request monitor's records: ``monitoring.count_checks``)."""
        for method, ms in response.timing.methods_ms.items():
            EXPLANATION_SECONDS.labels(method=method).observe(ms / 1e3)
        for result in response.results:
            IMAGES.labels(status=result.status).inc()


def current_state() -> ServiceState:
    """The running service's state; 503 before the service object exists."""
    state = getattr(bentoml.get_current_service(), "state", None)
    if not isinstance(state, ServiceState):
        raise NOT_READY
    return state
