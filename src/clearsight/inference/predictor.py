"""The served model: decode a request, batch the forward pass, explain, answer per image.

``Predictor`` holds one Keras model and its provenance. Forward passes use the compiled,
fixed-signature function of ``clearsight.explain.model_gradients`` (one trace for every batch
size; calling ``model.predict`` per request costs ~50 ms instead of ~1 ms). The caller hands
``predict`` an async forward function, normally an ``AdaptiveBatcher``, so that images of
concurrent requests share passes. Explanations are first held to the explanation budget
(``clearsight.inference.budget``: refused or reduced when over it), then run as chunks through
a ``FairScheduler`` shared round-robin with other requests' chunks.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, NamedTuple

import anyio
import anyio.to_thread
import keras
import numpy as np
from pydantic import BaseModel

from clearsight.choices import METHOD_NAMES, MethodName
from clearsight.errors import ImageError, RequestError
from clearsight.explain import explain, model_gradients
from clearsight.explain.gradients import PROBABILITIES
from clearsight.inference.budget import (
    BudgetPlan,
    Cost,
    ExplainBudget,
    method_units,
    over_budget,
    plan,
)
from clearsight.inference.explanations import (
    FALLBACK_METHOD,
    BatchExplanation,
    CostModel,
    ExplainedBatch,
    explain_batch,
)
from clearsight.inference.images import (
    decode_base64,
    decode_base64_with_notes,
    from_array,
    to_batch,
)
from clearsight.inference.litert import LiteRTForward, litert_forward
from clearsight.inference.provenance import Provenance
from clearsight.inference.scheduling import FairScheduler
from clearsight.inference.schemas import (
    EXAMPLE_PNG_BASE64,
    ActivationsRequest,
    ActivationsResponse,
    ArrayImage,
    BudgetReport,
    ExplainerDefaults,
    ExplainOptions,
    ImageInput,
    ImageResult,
    LayerActivations,
    Metadata,
    ModelIdentity,
    PredictRequest,
    PredictResponse,
    PredictTiming,
    TopClass,
    check_explain_options,
)
from clearsight.inference.served_task import served_task
from clearsight.mlflow_links import mlflow_ui_link
from clearsight.monitoring.requests import RequestMonitor
from clearsight.task import DIGITS, SCALE_MAX, ImageTask

logger = logging.getLogger(__name__)

Forward = Callable[[np.ndarray], Awaitable[np.ndarray]]
TOP_CLASSES = 5  # the most probable classes each answer names


class DecodedBatch(NamedTuple):
    """A request's images, position by position: pixels or the error, and the steps taken."""

    images: list[np.ndarray | None]
    errors: list[str | None]
    preprocessing: list[list[str]]


def decode_images(items: list[ImageInput], task: ImageTask = DIGITS) -> DecodedBatch:
    """Each request image as the task's float32 pixels in 0-1 ((H, W) grey, (H, W, 3) colour),
    or None with the reason it failed.

    Arrays are taken as given (no steps); encoded images say how they were prepared.
    """
    batch = DecodedBatch([], [], [])
    for item in items:
        try:
            if isinstance(item, ArrayImage):
                pixels, steps = from_array(item.data, item.scale, task), []
            else:
                decoded = decode_base64_with_notes(item.data, task)
                pixels, steps = decoded.pixels, list(decoded.preprocessing)
            batch.images.append(pixels)
            batch.errors.append(None)
            batch.preprocessing.append(steps)
        except ImageError as err:
            batch.images.append(None)
            batch.errors.append(str(err))
            batch.preprocessing.append([])
    return batch


def top_classes(probabilities: np.ndarray, task: ImageTask) -> list[TopClass]:
    """The ``TOP_CLASSES`` most probable classes of one image, best first, with their names."""
    order = np.argsort(-probabilities, kind="stable")[:TOP_CLASSES]
    return [
        TopClass(index=int(i), name=task.class_names[int(i)], probability=float(probabilities[i]))
        for i in order
    ]


def example_image(task: ImageTask) -> np.ndarray:
    """One image of the task for warm-up: the example MNIST 7 for the digits, a fixed
    pattern of the task's shape otherwise (what is traced is the shape, not the content)."""
    if task == DIGITS:
        return decode_base64(EXAMPLE_PNG_BASE64)
    rows, cols = np.mgrid[: task.height, : task.width]
    pattern = ((rows + cols) % 7 / 6.0).astype(np.float32)
    return pattern if task.channels == 1 else np.repeat(pattern[..., None], 3, axis=-1)


def budget_note(budget: BudgetPlan | None) -> str | None:
    """The line each image of a reduced request carries (None: nothing was reduced)."""
    if budget is None or not budget.reductions:
        return None
    return (
        f"explanation budget: {budget.requested_units:,.0f} units asked, over the limit of "
        f"{budget.limit:,}; reduced to {budget.units:,.0f}: {'; '.join(budget.reductions)}"
    )


class Predictor:
    """One model, ready to answer ``PredictRequest``s and report where it came from."""

    def __init__(
        self,
        model: keras.Model,
        provenance: Provenance,
        bento_model: str,
        default_budget_ms: float | None = None,
        mlflow_ui_url: str | None = None,
        *,
        budget: ExplainBudget | None = None,
        chunk_units: float | None = 256,
        scheduler: FairScheduler | None = None,
        task: ImageTask | None = None,
        litert: bool = False,
    ) -> None:
        """``budget``: the explanation limit per request (default: 4096 units, refuse);
        ``chunk_units``: the size of a fair-share chunk (None: one chunk per method);
        ``scheduler``: shared with other predictors (versions) so they share the workers;
        ``task``: the task stored with the model (class names, digit-likeness), checked
        against the model's shapes (``served_task``), which decide when they disagree;
        ``litert``: forward passes through LiteRT after warm-up, where the parity check allows
        (``clearsight.inference.litert``: a fifth of the per-call cost)."""
        self.model = model
        self.task = served_task(model, task)
        self.mlflow_ui_url = mlflow_ui_url.rstrip("/") if mlflow_ui_url else None
        self.provenance = provenance
        self.bento_model = bento_model
        self.default_budget_ms = default_budget_ms
        self.costs = CostModel()
        self._gradients = model_gradients(model)
        self.budget = budget or ExplainBudget()
        self.chunk_units = chunk_units
        self.scheduler = scheduler or FairScheduler()
        self.litert = litert
        self._fast_forward: LiteRTForward | None = None  # set by warm_up when LiteRT is used
        self.ready = False
        # Out-of-distribution checks and the traffic log (None: neither); the service sets it.
        self.monitor: RequestMonitor | None = None

    # -- numbers ------------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) for float32 images (N, H, W, C) in 0-1."""
        if self._fast_forward is not None:
            return self._fast_forward(x)
        return self._keras_forward(x)

    def _keras_forward(self, x: np.ndarray) -> np.ndarray:
        return self._gradients.scores(x, PROBABILITIES)

    def explain(
        self, x: np.ndarray, options: ExplainOptions, probabilities: np.ndarray | None = None
    ) -> ExplainedBatch:
        return explain_batch(
            self.model, x, options, self.costs, probabilities, class_names=self.task.class_names
        )

    def warm_up(self) -> None:
        """Compile every path a request can take and measure each method's cost, then ready.

        The first call of a compiled function traces it (hundreds of ms); doing that here keeps
        it out of user requests and gives the budget logic real numbers for this host.
        """
        digit = to_batch([example_image(self.task)])
        for n in (1, 8):
            self.forward(np.repeat(digit, n, axis=0))
        if self.litert:
            noise = np.random.default_rng(0).random((7, *digit.shape[1:]), dtype=np.float32)
            probe = np.concatenate([digit, noise])
            self._fast_forward = litert_forward(self.model, self._keras_forward, probe)
        for method in METHOD_NAMES:
            options = ExplainOptions(
                methods=[method], encodings=["float16", "png_heatmap", "png_overlay"]
            )
            self.explain(digit, options)  # compile
            self.costs.ms_per_row.pop(method, None)
            self.explain(digit, options)  # measure warm
        self.ready = True
        logger.info(
            "warm: forward through %s; %s",
            "LiteRT" if self._fast_forward is not None else "Keras",
            ", ".join(f"{m} {ms:.1f} ms" for m, ms in self.costs.ms_per_row.items()),
        )

    # -- requests -----------------------------------------------------------------------
    async def _explain_async(
        self, x: np.ndarray, budget: BudgetPlan, probabilities: np.ndarray
    ) -> ExplainedBatch:
        """The request's explanations, chunk by chunk, each chunk when its turn comes."""
        job = BatchExplanation(
            self.model,
            x,
            budget.options,
            self.costs,
            probabilities,
            substitutions=budget.substitutions,
            chunk_units=self.chunk_units,
            class_names=self.task.class_names,
        )
        turn = object()  # this request's key in the round-robin
        for chunk in job.chunks():
            await self.scheduler.run(turn, chunk)
        return job.result()

    async def attribution_maps(self, x: np.ndarray, method: MethodName) -> np.ndarray:
        """Raw maps (N, H, W) of ``method`` (library defaults) for each image's predicted
        class. Over the explanation budget it is refused whatever the policy: raw maps have
        no place to say what a reduction changed."""
        per_image = method_units(method, size=self.size)
        cost = Cost(len(x), 1, {method: per_image})
        if cost.units > self.budget.max_units:
            raise over_budget(cost, self.budget.max_units)
        step = len(x) if self.chunk_units is None else max(1, int(self.chunk_units // per_image))
        turn = object()
        maps = []
        for start in range(0, len(x), step):
            part = x[start : start + step]
            chunk = partial(explain, self.model, part, method, "predicted")
            maps.append((await self.scheduler.run(turn, chunk)).maps)
        return np.concatenate(maps)

    async def predict(self, request: PredictRequest, forward: Forward) -> PredictResponse:
        """Answer a request; images that cannot be read get status 'error', the rest go on.

        Raises ``RequestError`` (422) only when no image of the request could be read.
        """
        start = time.perf_counter()
        task = self.task
        options = request.explain_options(self.default_budget_ms)
        if options is not None:
            check_explain_options(options, task.n_classes)
        if any(not isinstance(item, ArrayImage) for item in request.images):
            images, errors, preprocessing = await anyio.to_thread.run_sync(
                decode_images, request.images, task
            )
        else:
            images, errors, preprocessing = decode_images(request.images, task)
        decoded = time.perf_counter()
        valid = [i for i, image in enumerate(images) if image is not None]
        if not valid:
            detail = [{"index": i, "error": e} for i, e in enumerate(errors)]
            summary = "; ".join(f"image {d['index']}: {d['error']}" for d in detail[:3])
            raise RequestError(422, "invalid_image", f"no image could be read ({summary})", detail)
        # Before any work: a request over the budget is refused (422) or reduced here.
        budget = plan(options, len(valid), self.budget, size=self.size) if options else None
        x = to_batch([image for image in images if image is not None])  # the valid ones, in order
        probabilities = np.asarray(await forward(x))
        forwarded = time.perf_counter()
        explained = await self._explain_async(x, budget, probabilities) if budget else None
        reduced = budget_note(budget)
        request_id = uuid.uuid4().hex
        out_of_distribution = self._review(x, probabilities, request_id)
        finished = time.perf_counter()

        results = [
            ImageResult(index=i, status="error", error=error)
            for i, error in enumerate(errors)
            if error is not None
        ]
        for row, index in enumerate(valid):
            p = probabilities[row]
            label = int(np.argmax(p))
            warnings = ([reduced] if reduced else []) + (
                explained.warnings[row] if explained else []
            )
            results.append(
                ImageResult(
                    index=index,
                    status="degraded" if warnings else "ok",
                    label=label,
                    class_name=task.class_names[label],
                    confidence=float(p[label]),
                    probabilities=[float(v) for v in p],
                    top_classes=top_classes(p, task),
                    explanations=explained.explanations[row] if explained else [],
                    warnings=warnings,
                    preprocessing=preprocessing[index],
                    out_of_distribution=out_of_distribution[row],
                )
            )
        results.sort(key=lambda r: r.index)
        return PredictResponse(
            model=self.identity(),
            request_id=request_id,
            results=results,
            timing=PredictTiming(
                decode_ms=1e3 * (decoded - start),
                forward_ms=1e3 * (forwarded - decoded),
                explain_ms=1e3 * (finished - forwarded),
                total_ms=1e3 * (finished - start),
                methods_ms=explained.methods_ms if explained else {},
            ),
            explain_budget=None
            if budget is None
            else BudgetReport(
                limit=budget.limit,
                requested_units=budget.requested_units,
                units=budget.units,
                reductions=budget.reductions,
            ),
        )

    def _review(
        self,
        x: np.ndarray,
        probabilities: np.ndarray,
        request_id: str,
    ) -> list[list[str]]:
        """Out-of-distribution checks per image, as the sentences the answer shows, and
        traffic records (never raises: a monitoring fault must not fail a prediction).
        The request's explanations are not passed on: they follow the caller's options, and
        the monitor's attribution summaries must not (``clearsight.monitoring.traffic``)."""
        if self.monitor is None:
            return [[] for _ in range(len(x))]
        try:
            failed = self.monitor.review(x, probabilities, request_id)
            return [[str(check) for check in row] for row in failed]
        except Exception:
            logger.exception("request monitoring failed; answering without it")
            return [[] for _ in range(len(x))]

    def activations(self, request: ActivationsRequest) -> ActivationsResponse:
        """Every conv and pool layer's output for one image, drawn as a PNG strip per layer."""
        import base64

        from clearsight.explain import activations
        from clearsight.explain.render import activation_grid_pngs

        (image,), (error,), _ = decode_images([request.image], self.task)
        if image is None:
            raise RequestError(
                422, "bad_image", f"image 0: {error}", [{"index": 0, "error": error}]
            )
        outputs = activations(self.model, to_batch([image]))
        layers = {name: out for name, out in outputs.items() if name.startswith(("conv", "pool"))}
        pngs = activation_grid_pngs(layers)
        return ActivationsResponse(
            model=self.identity(),
            layers=[
                LayerActivations(
                    name=name,
                    shape=list(layers[name].shape[1:]),
                    png=base64.b64encode(png).decode("ascii"),
                )
                for name, png in pngs.items()
            ],
        )

    # -- description --------------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the served images: what explanation costs are counted on."""
        return (self.task.height, self.task.width)

    def identity(self) -> ModelIdentity:
        return ModelIdentity(**self._provenance_fields(ModelIdentity))

    def _provenance_fields(self, schema: type[BaseModel]) -> dict[str, Any]:
        """The provenance (and bento model tag) fields that ``schema`` declares."""
        values = self.provenance.to_dict() | {"bento_model": self.bento_model}
        return {k: v for k, v in values.items() if k in schema.model_fields}

    def metadata(self) -> Metadata:
        p = self.provenance
        defaults = ExplainOptions(budget_ms=self.default_budget_ms)
        chosen = {"methods", "targets", "encodings", "budget_ms", "parameters"}
        task = self.task
        return Metadata(
            **self._provenance_fields(Metadata),
            class_names=list(task.class_names),
            task=task.to_metadata(),
            input={
                "shape": list(task.stored_shape),
                "model_input_shape": list(task.input_shape),
                "mode": "grey" if task.channels == 1 else "colour",
                "scales": list(SCALE_MAX),
                "encoded_formats": ["png", "jpeg"],
                "preparation": input_preparation(task),
            }
            | ({"polarity": input_preparation(task)} if task.digit_like else {}),
            explainer=ExplainerDefaults(
                **defaults.model_dump(include=chosen),
                fallback_method=FALLBACK_METHOD,
                available_methods=list(METHOD_NAMES),
                measured_ms_per_image=dict(self.costs.ms_per_row),
                max_units=self.budget.max_units,
                over_budget=self.budget.over_budget,
                units_per_target={
                    m: method_units(m, defaults.parameters.model_dump().get(m), size=self.size)
                    for m in METHOD_NAMES
                },
            ),
            mlflow_run_url=(
                mlflow_ui_link(self.mlflow_ui_url, run_id=p.run_id)
                if self.mlflow_ui_url and p.run_id
                else None
            ),
        )


def input_preparation(task: ImageTask) -> str:
    """How encoded images are brought to the model, in one sentence for /metadata."""
    size = f"{task.width}x{task.height}"
    if task.digit_like and task.channels == 1:
        return (
            "the model sees light digits on a dark background, as MNIST; encoded images that "
            "are dark on light are inverted (decided from their border), images of another "
            f"size are cropped to the ink and centred like MNIST, then brought to {size}; "
            "each step is said in 'preprocessing'; arrays are taken as given"
        )
    mode = "grey" if task.channels == 1 else "RGB colour"
    return (
        f"encoded images are converted to {mode} and resized (bilinear) to {size}, each step "
        "said in 'preprocessing'; arrays must have input.shape and are taken as given"
    )
