"""The HTTP routes of the clearsight service (FastAPI, mounted on the BentoML service).

Wiring only: each route validates with the library's schemas, calls the service's
``Predictor`` and batcher, and returns JSON. Errors a client can fix answer 4xx with
``{"error", "code", "detail"}``; nothing a client sends should produce a 5xx.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Body, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from clearsight.errors import RequestError
from clearsight.inference import oip
from clearsight.inference.feedback import (
    FeedbackRequest,
    FeedbackResponse,
    record_feedback,
)
from clearsight.inference.feedback_limits import caller_key
from clearsight.inference.live import LiveModel
from clearsight.inference.schemas import (
    ActivationsRequest,
    ActivationsResponse,
    ErrorResponse,
    LiveState,
    Metadata,
    PredictRequest,
    PredictResponse,
    RefusalInfo,
    example_requests,
)
from serving import bodies
from serving.errors import error_response
from serving.guards import presented_key
from serving.pipeline import current_state

JSON = "application/json"
UI_DIR = Path(__file__).parent / "ui"
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "Malformed request: the field and the problem are named"),
        (401, "Missing or wrong API key (when the service has one)"),
        (413, "Request body over the configured limit"),
        (422, "No image of the request could be read, or explanations over the budget"),
        (503, "Warming up or overloaded; retry shortly"),
    )
}
# Documented in the spec (Swagger's "Authorize"); enforced for every route by ServiceGuard.
API_KEY = [
    Depends(HTTPBearer(auto_error=False)),
    Depends(APIKeyHeader(name="X-API-Key", auto_error=False)),
]


def adapting_route(adapt: Callable[[Request], Awaitable[Request | None]]) -> type[APIRoute]:
    """A route class that lets ``adapt`` turn non-JSON bodies into the declared JSON body,
    and parses JSON bodies with ``bodies.JSONRequest`` (these routes carry the pixels)."""

    class AdaptingRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
            handler = super().get_route_handler()

            async def adapted(request: Request) -> Response:
                try:
                    replacement = await adapt(request)
                except RequestError as err:
                    return error_response(err)
                return await handler(replacement or bodies.as_json_request(request))

            return adapted

    return AdaptingRoute


def live_model() -> LiveModel:
    """The model that answers this request, read once: a swap during the request does not
    change it, so every request is answered by exactly one model version."""
    return current_state().live()


def json_response(model: Any, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code=status, media_type=JSON)


app = FastAPI(
    title="clearsight",
    description="Predictions and explanations of the registry's champion image classifier "
    "(the embedded MNIST digits by default; /metadata says which task it serves).",
    # BentoML serves the Swagger UI at / from /docs.json: its merge of BentoML's endpoints with
    # these routes, labelled OpenAPI 3.0.2 although FastAPI's schemas are 3.1.
    docs_url=None,
    redoc_url=None,
    openapi_url="/openapi.json",  # FastAPI's own OpenAPI 3.1 document of these routes
)
predict_router = APIRouter(route_class=adapting_route(bodies.uploads_as_json))
# OIP clients (tritonclient among them) may send JSON without a content-type header.
oip_router = APIRouter(
    route_class=adapting_route(bodies.binary_tensors_as_json),
    prefix="/v2",
    strict_content_type=False,
)


@predict_router.post(
    "/predict",
    response_model=PredictResponse,
    responses=ERRORS,
    openapi_extra=bodies.MULTIPART_OPENAPI,
    tags=["clearsight"],
    summary="Classify images; explain the predictions",
)
async def predict(
    body: Annotated[PredictRequest, Body(openapi_examples=example_requests())],
) -> Response:
    """A batch of images (arrays, base64 PNG/JPEG, or uploaded files as multipart form data):
    label, confidence and probabilities per image, with explanations unless ``explain`` is
    false. Each image has a status: ok, degraded (an explanation was substituted or failed)
    or error (unreadable; the other images are still answered)."""
    return json_response(await current_state().predict(body))


@predict_router.post(
    "/activations",
    response_model=ActivationsResponse,
    responses=ERRORS,
    tags=["clearsight"],
    summary="Activation maps of every conv and pool layer for one image",
)
async def layer_activations(body: ActivationsRequest) -> Response:
    """What each layer 'sees': the channels of conv1, pool1, conv2 and pool2 as PNG strips."""
    return json_response(live_model().predictor.activations(body))


@app.post(
    "/feedback",
    response_model=FeedbackResponse,
    responses=ERRORS
    | {429: {"model": ErrorResponse, "description": "Over this caller's rate or the backlog cap"}},
    tags=["clearsight"],
    dependencies=API_KEY,
    status_code=202,
    summary="Send the right answers: labelled images for the next retrain",
)
async def feedback(request: Request, body: FeedbackRequest) -> Response:
    """Images (as for /predict) with their true labels and the ``request_id`` of the /predict
    answer they came from (or ``request_ids``, one per image). Each image must be one that
    request was answered for, recently; then the batch is written atomically to the incoming
    folder, where the next ingest checks it (labels too) and adds it to the training data or
    quarantines it. 202 with the batch name and image count; 429 with Retry-After past this
    caller's rate or the backlog cap."""
    state = current_state()
    config = state.settings.serving
    caller = caller_key(
        request.client.host if request.client else None, presented_key(request.scope)
    )
    state.feedback_limiter().admit(caller, len(body.images))
    folder = state.settings.incoming_dir
    assert folder is not None
    task = state.holder.current.predictor.task  # the served model's: labels, image shape
    answer = await anyio.to_thread.run_sync(
        partial(
            record_feedback,
            body,
            folder,
            state.monitoring.answers,
            config.feedback_max_age_s,
            task=task,
        )
    )
    return json_response(answer, 202)


@app.get(
    "/metadata",
    response_model=Metadata,
    responses=ERRORS,
    tags=["clearsight"],
    dependencies=API_KEY,
)
async def metadata() -> Response:
    """The served model: registry name and version, run id, data digests, classes, explainer
    defaults and each method's measured cost, and its live-swap state."""
    state = current_state()
    holder = state.holder
    live = state.live()
    refusal = holder.last_refusal
    state = LiveState(
        following=holder.following,
        live_since=live.live_since,
        swaps=holder.swaps,
        last_refusal=RefusalInfo(**vars(refusal)) if refusal else None,
    )
    return json_response(live.predictor.metadata().model_copy(update={"live": state}))


@app.post(
    "/admin/reload",
    responses=ERRORS | {409: {"model": ErrorResponse, "description": "Not following an alias"}},
    tags=["admin"],
    dependencies=API_KEY,
    status_code=202,
)
async def reload(wait: bool = False, force: bool = False) -> JSONResponse:
    """Check the followed registry alias now (the retrain flow calls this after a promotion).

    Without ``wait``: 202 at once, the check runs in the background. With ``wait=true``: the
    outcome (unchanged, swapped, refused, unreachable). ``force`` retries a refused version.
    """
    follower = current_state().follower
    if follower is None:
        raise RequestError(
            409,
            "not_following",
            "this service serves a pinned model; set CLEARSIGHT_SERVING__FOLLOW_ALIAS to follow",
        )
    if not wait:
        follower.wake(force=force)
        body = {"status": "checking", "following": follower.alias}
        return JSONResponse(body | {"version": follower.holder.current.version}, status_code=202)
    result = await anyio.to_thread.run_sync(lambda: follower.check(force=force))
    return JSONResponse(result.to_dict() | {"live_version": follower.holder.current.version})


# -- Open Inference Protocol v2 ------------------------------------------------------------
def _model(live: LiveModel, name: str, version: str | None = None) -> tuple[str, str]:
    provenance = live.predictor.provenance
    if name != provenance.name or version not in (None, provenance.version):
        wanted = f"{name}" + (f" version {version}" if version else "")
        raise RequestError(
            404,
            "not_found",
            f"no model {wanted}; this server has {provenance.name} v{provenance.version}",
        )
    return provenance.name, provenance.version


@oip_router.get("", response_model=oip.ServerMetadata, tags=["open inference protocol"])
async def server_metadata() -> oip.ServerMetadata:
    return oip.ServerMetadata(name="clearsight", version="2", extensions=["binary_tensor_data"])


@oip_router.get("/health/live", tags=["open inference protocol"])
async def server_live() -> dict[str, bool]:
    return {"live": True}


@oip_router.get("/health/ready", responses=ERRORS, tags=["open inference protocol"])
async def server_ready() -> dict[str, bool]:
    current_state().live()
    return {"ready": True}


OIP = {"responses": ERRORS, "tags": ["open inference protocol"]}


@oip_router.get("/models/{name}", response_model=oip.ModelMetadata, **OIP)
@oip_router.get("/models/{name}/versions/{version}", response_model=oip.ModelMetadata, **OIP)
async def model_metadata(name: str, version: str | None = None) -> oip.ModelMetadata:
    """The model's tensors (input ``[-1, H, W, C]`` of the served task); with a version, 404
    unless that version is the one served."""
    live = live_model()
    return oip.model_metadata(*_model(live, name, version), live.predictor.task)


@oip_router.get("/models/{name}/ready", **OIP)
@oip_router.get("/models/{name}/versions/{version}/ready", **OIP)
async def model_ready(name: str, version: str | None = None) -> dict[str, Any]:
    _model(live_model(), name, version)
    return {"name": name, "ready": True}


async def _infer(
    request: Request, body: oip.InferRequest, name: str, version: str | None
) -> Response:
    live = live_model()
    model_name, model_version = _model(live, name, version)
    content, header_length = await oip.infer(
        body,
        bodies.binary_part(request),
        model_name=model_name,
        model_version=model_version,
        forward=live.forward,
        attribute=live.predictor.attribution_maps,
        task=live.predictor.task,
    )
    if header_length is None:
        return Response(content, media_type=JSON)
    return Response(
        content,
        media_type="application/octet-stream",
        headers={oip.HEADER_LENGTH: str(header_length)},
    )


INFER_BODY = Body(
    openapi_examples={"blank": {"summary": "one blank image", "value": oip.example_request()}}
)


@oip_router.post(
    "/models/{name}/infer",
    response_model=oip.InferResponse,
    responses=ERRORS,
    tags=["open inference protocol"],
)
async def infer(
    request: Request, name: str, body: Annotated[oip.InferRequest, INFER_BODY]
) -> Response:
    """Inference; JSON tensors or Triton's binary tensor extension."""
    return await _infer(request, body, name, None)


@oip_router.post(
    "/models/{name}/versions/{version}/infer",
    response_model=oip.InferResponse,
    responses=ERRORS,
    tags=["open inference protocol"],
)
async def infer_version(
    request: Request, name: str, version: str, body: Annotated[oip.InferRequest, INFER_BODY]
) -> Response:
    return await _infer(request, body, name, version)


app.include_router(predict_router, dependencies=API_KEY)
app.include_router(oip_router, dependencies=API_KEY)
if UI_DIR.is_dir():  # the static web page (draw a digit, see why), served as it is
    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")


# -- errors -------------------------------------------------------------------------------
@app.exception_handler(RequestError)
async def request_error(_: Request, err: RequestError) -> JSONResponse:
    return error_response(err)


@app.exception_handler(RequestValidationError)
async def invalid_request(_: Request, err: RequestValidationError) -> JSONResponse:
    """400 naming the first offending field (``images.0.array.scale: Field required``)."""
    detail = [
        {
            "loc": readable_location(e.get("loc", ())),
            "msg": e.get("msg", ""),
            "type": e.get("type", ""),
        }
        for e in err.errors()
    ]
    first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
    where = ".".join(map(str, first["loc"])) or "body"
    more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
    return JSONResponse(
        {"error": f"{where}: {first['msg']}{more}", "code": "invalid_request", "detail": detail},
        status_code=400,
    )


def readable_location(loc: tuple[Any, ...]) -> list[str | int]:
    """pydantic's error location without 'body' and validator wrappers."""
    parts = list(loc[1:] if loc[:1] == ("body",) else loc)
    return [p for p in parts if not (isinstance(p, str) and p.startswith("function-"))]


@app.exception_handler(HTTPException)
async def http_error(_: Request, err: HTTPException) -> JSONResponse:
    codes = {
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        415: "unsupported_media_type",
    }
    return JSONResponse(
        {
            "error": str(err.detail),
            "code": codes.get(err.status_code, "invalid_request"),
            "detail": [],
        },
        status_code=err.status_code,
        headers=err.headers,
    )
