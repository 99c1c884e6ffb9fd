"""The clearsight BentoML service: the registry's champion, with explanations on request.

    bentoml serve serving.service:Clearsight --arg model=clearsight-cnn:v3-<run id>
    clearsight serve                      # imports the current champion first, then the above

Thin by design: load the model from the BentoML store (the bento argument ``model`` names
it; ``clearsight build-service`` pins it in the bento), warm it up in the background (``/readyz``
answers 503 until then), batch forward passes adaptively, record metrics, and mount the routes
of ``serving.routes``. With ``CLEARSIGHT_SERVING__FOLLOW_ALIAS`` set (``clearsight serve`` sets
it), ``serving.live_swap`` then follows that registry alias and swaps versions live.
Everything else is ``clearsight.inference``.
"""

from __future__ import annotations

# First: importing clearsight switches off telemetry before BentoML reads the environment.
import clearsight  # noqa: F401

# isort: split
import logging
import threading
from typing import TYPE_CHECKING, Any

import bentoml
from pydantic import BaseModel
from starlette.responses import JSONResponse

from clearsight.access import admin_token
from clearsight.errors import RequestError
from clearsight.inference.budget import ExplainBudget
from clearsight.inference.live import LiveModel, ModelHolder
from clearsight.inference.provenance import Provenance
from clearsight.inference.scheduling import FairScheduler
from clearsight.inference.schemas import ExplainOptions, ImageInput, PredictRequest, PredictResponse
from clearsight.offline import QUIET_ENVIRONMENT, quiet_output
from serving.batching import AdaptiveBatcher
from serving.bento_store import load_stored_model, stored_provenance, stored_task
from serving.errors import error_response
from serving.event_loop import choose_event_loop
from serving.garbage import settle_after_warm_up
from serving.guards import ServiceGuard
from serving.live_swap import AliasFollower
from serving.metrics import FORWARD_BATCH, LIVE_VERSION, REFUSALS, SHED, SWAPS
from serving.monitoring import ServiceMonitoring
from serving.pipeline import ServiceState
from serving.routes import app
from serving.settings import ServiceSettings
from serving.shedding import FrontDoor

if TYPE_CHECKING:
    from clearsight.inference.predictor import Predictor
    from clearsight.task import ImageTask

quiet_output()  # an entry point: before the model (and TensorFlow's C++ log) loads


logger = logging.getLogger("clearsight.serving")
if not logging.getLogger("clearsight").handlers:  # BentoML configures only its own loggers
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] [%(name)s] %(message)s"))
    logging.getLogger("clearsight").addHandler(_handler)
    logging.getLogger("clearsight").setLevel(logging.INFO)


class Arguments(BaseModel):
    """Bento arguments (``--arg model=...``); a built bento stores the model it was built for."""

    model: str = "clearsight-cnn:latest"


ARGUMENTS = bentoml.use_arguments(Arguments)
# Built once per process, here at the entry point, and passed down from here on.
SETTINGS = ServiceSettings()
SERVER = SETTINGS.serving
choose_event_loop(SERVER.event_loop)  # before the worker starts uvicorn: see event_loop

TRAFFIC_TIMEOUT_S = 120


@bentoml.service(
    name="clearsight",
    traffic={"timeout": TRAFFIC_TIMEOUT_S},
    workers=1,
    # Per-request costs, measured under overload (py-spy): BentoML's access-log middleware and
    # OpenTelemetry spans that nothing samples took ~15 % of the event loop together. Both are
    # off unless asked for (CLEARSIGHT_SERVING__ACCESS_LOG, CLEARSIGHT_SERVING__TRACE_REQUESTS).
    logging={"access": {"enabled": SERVER.access_log}},
    tracing={} if SERVER.trace_requests else {"excluded_urls": ["/"]},
    # Telemetry off in every worker and in a container built from the bento.
    envs=[{"name": name, "value": value} for name, value in QUIET_ENVIRONMENT.items()],
)
@bentoml.asgi_app(app, path="/")
class Clearsight:
    """Predictions and explanations of one model version from the clearsight registry."""

    stored_model = bentoml.models.BentoModel(ARGUMENTS.model)

    def __init__(self) -> None:
        monitoring = ServiceMonitoring(SETTINGS)  # traffic log, OOD bounds, drift gauges
        self.explain_scheduler = FairScheduler(SERVER.explain_workers)
        self.monitoring = monitoring
        predictor = self.new_predictor(
            load_stored_model(self.stored_model),
            stored_provenance(self.stored_model),
            str(self.stored_model.tag),
            stored_task(self.stored_model),
        )
        holder = ModelHolder(self.live(predictor), following=SERVER.follow_alias)
        follower = None
        if SERVER.follow_alias:
            follower = AliasFollower(
                holder,
                SETTINGS,
                alias=SERVER.follow_alias,
                poll_seconds=SERVER.poll_seconds,
                retry_first_seconds=SERVER.retry_first_seconds,
                retry_max_seconds=SERVER.retry_max_seconds,
                make_live=self.live,
                make_predictor=self.new_predictor,
                on_swap=self._swapped,
                on_refusal=lambda version, reason: REFUSALS.inc(),
            )
        self.state = ServiceState(SETTINGS, holder, monitoring, follower)
        threading.Thread(target=self._warm_up, name="clearsight-warm-up", daemon=True).start()

    def new_predictor(
        self, model: Any, provenance: Provenance, source: str, task: ImageTask | None = None
    ) -> Predictor:
        """A predictor of one version; its task (shape, class names) is the model's own,
        named by ``task`` (the stored one), so a swap brings its task with it."""
        from clearsight.inference.predictor import Predictor

        predictor = Predictor(
            model,
            provenance,
            source,
            SERVER.default_budget_ms,
            SERVER.mlflow_ui_url,
            budget=ExplainBudget(SERVER.max_explain_units, SERVER.explain_over_budget),
            chunk_units=SERVER.explain_chunk_units,
            scheduler=self.explain_scheduler,  # one for every version: swaps share the workers
            task=task,
            litert=SERVER.forward_runtime == "litert",
        )
        predictor.monitor = self.monitoring.monitor_for(
            provenance, bool(SERVER.follow_alias), predictor.task
        )
        return predictor

    @staticmethod
    def live(predictor: Predictor) -> LiveModel:
        """A predictor with its own batcher: a batch never mixes two model versions."""
        batcher = AdaptiveBatcher(
            predictor.forward,
            max_batch_size=SERVER.max_batch_size,
            max_latency_ms=SERVER.max_batch_latency_ms,
            on_batch=FORWARD_BATCH.observe,
        )
        return LiveModel(predictor, batcher)

    @staticmethod
    def _swapped(old: LiveModel, new: LiveModel) -> None:
        SWAPS.inc()
        LIVE_VERSION.set(float(new.version) if new.version.isdigit() else -1)
        # The old model finishes what it started; after the traffic timeout nothing is left.
        if isinstance(old.forward, AdaptiveBatcher):
            threading.Timer(TRAFFIC_TIMEOUT_S, old.forward.close).start()

    def _warm_up(self) -> None:
        live = self.state.holder.current
        try:
            live.predictor.warm_up()
        except Exception:  # stays unready: /readyz keeps answering 503, the log says why
            logger.exception("warm-up failed; the service will not become ready")
            return
        LIVE_VERSION.set(float(live.version) if live.version.isdigit() else -1)
        settle_after_warm_up(SERVER.gc_young_threshold)  # why: serving/garbage.py
        if self.state.follower is not None:
            self.state.follower.start()

    def __is_ready__(self) -> bool:
        return self.state.holder.current.predictor.ready

    # -- typed BentoML APIs: bentoml.SyncHTTPClient(url).classify(images=[...]) ------------
    @bentoml.api(route="/classify")
    async def classify(self, images: list[ImageInput]) -> PredictResponse:
        """Labels (with class names), confidences and probabilities of a batch of images of
        the model's size, or encoded images resized to it (no explanations)."""
        return await self.answer(PredictRequest(images=images, explain=False))

    @bentoml.api(route="/explain")
    async def explain(
        self, images: list[ImageInput], options: ExplainOptions | None = None
    ) -> PredictResponse:
        """Predictions with explanations (integrated gradients and Grad-CAM by default;
        ``options`` chooses methods, targets, encodings and a time budget)."""
        return await self.answer(PredictRequest(images=images, explain=options or True))

    async def answer(self, request: PredictRequest) -> PredictResponse | JSONResponse:
        """The service's one pipeline (``ServiceState.predict``), as ``POST /predict`` runs
        it. An error is returned as a response, not raised: a client's mistake is no server
        traceback in the log."""
        try:
            return await self.state.predict(request)
        except RequestError as err:
            return error_response(err)


Clearsight.add_asgi_middleware(
    FrontDoor, max_in_flight=SERVER.max_in_flight, on_shed=lambda: SHED.inc()
)
Clearsight.add_asgi_middleware(
    ServiceGuard,
    api_key=SERVER.secret("api_key"),
    feedback_token=SERVER.secret("feedback_token"),
    admin_token=admin_token(SETTINGS),  # the setting, or the file `clearsight serve` made
    max_body_bytes=SERVER.max_body_bytes,
)
