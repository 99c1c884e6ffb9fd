"""The HTTP API's typed request and response bodies (pydantic), shared by server and client.

The JSON Schema of these models is what the OpenAPI spec shows, so constraints live here:
batch size, method and class names, parameter ranges. A request that breaks them is refused
as a whole with 400 and the offending field named. Per-image content (shape, range, NaN,
undecodable bytes) is checked when decoding instead, so one bad image does not fail a batch.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from clearsight.choices import (
    DEFAULT_METHODS,
    IG_TARGET_GAP,
    SALIENCY,
    SMOOTHGRAD,
    MethodName,
)

MAX_IMAGES_PER_REQUEST = 64
MAX_ENCODED_IMAGE_CHARS = 4 * 1024 * 1024  # base64 characters of one PNG/JPEG
# Ceilings of the schema, whatever the model: the served task's own limits (its class count,
# its image shape) are checked per request (``check_options``, decoding) with a 400 that says
# what the model takes.
MAX_CLASSES = 1000
MAX_SIDE = 1024  # rows and columns of an array image

Encoding = Literal["float16", "png_heatmap", "png_overlay"]
Scale = Literal["0-1", "0-255"]
TargetMode = Literal["predicted", "top-k", "explicit"]
ImageStatus = Literal["ok", "degraded", "error"]
ClassIndex = Annotated[int, Field(ge=0, le=MAX_CLASSES - 1)]
Pixel = Annotated[float, Strict()]  # numbers only: true/false are not pixels

# A real MNIST 7 (the embedded subset), PNG: the example the Swagger UI sends.
EXAMPLE_PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAA50lEQVR42t3SMUuCURTG8ScHhyBRcrCp8U2cnRoil"
    "LZoaMvdQcXFqS8QOLg65ChCNLaIQRGNQUOLJJSVnyCFUOx/sSWK9+U9g6tnupfffbj3XI60MrUW2Nei6YKeMyEn98qX"
    "3wDzfgC27kajMe4BgA+/5d8A8Da9/Xfo+vEa+KpkJTXhJemzgwkMdyVJV9DwB3twn5OkxMnn7+q/jh9vU5KkU3hKGW0"
    "fTpmVrD9xULTsbOGcZ1i06yhHwm29iGvHw23jAqpGTmkYWI/ZadHftrADwQ7/7sjEdH5jBeu8eua85DhabsB+AEy2X3"
    "AOEwgXAAAAAElFTkSuQmCC"
)


class _Strict(BaseModel):
    """Unknown fields are errors: a typo in an option must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


Row = Annotated[list[Pixel], Field(max_length=MAX_SIDE)]
ColourRow = Annotated[
    list[Annotated[list[Pixel], Field(min_length=3, max_length=3)]], Field(max_length=MAX_SIDE)
]


class ArrayImage(_Strict):
    """An image of the model's size as nested lists, taken as given: H rows of W numbers for
    a grey model (light digits on dark for the MNIST-like digits), H rows of W [r, g, b]
    triples for a colour one (``/metadata``'s ``input.shape``)."""

    kind: Literal["array"]
    scale: Scale = Field(
        description="The range the values are in: '0-1' (floats) or '0-255' (pixel values). "
        "Required: the same numbers mean different images under each."
    )
    data: list[Row] | list[ColourRow] = Field(
        max_length=MAX_SIDE,
        description="The model's input.shape: H rows of W finite numbers within the scale "
        "(grey), or of W [r, g, b] triples (colour).",
    )


class EncodedImage(_Strict):
    """A PNG or JPEG file, base64-encoded (a ``data:image/...;base64,`` prefix is accepted).

    Any size and mode: it is converted to the model's mode (grey or RGB) and resized to its
    input size, and the result's ``preprocessing`` says so. For MNIST-like digit models,
    either polarity is accepted instead: a dark digit on a light background (paper, a scan, a white
    canvas), decided from the image's border, is inverted to light on dark as MNIST is, and its
    background level removed. Images that are not 28x28 are then normalised like MNIST: cropped
    to the ink, the longer side scaled to 20 px and centred on a 28x28 canvas. The result's
    ``preprocessing`` lists what was done.
    """

    kind: Literal["base64"]
    data: str = Field(min_length=1, max_length=MAX_ENCODED_IMAGE_CHARS)


ImageInput = Annotated[ArrayImage | EncodedImage, Field(discriminator="kind")]


class IntegratedGradientsParameters(_Strict):
    steps: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Fixed trapezoid steps; omitted: the adaptive rule (points placed until "
        "the completeness gap is at most target_gap, at most 32 gradient evaluations).",
    )
    target_gap: float = Field(
        default=IG_TARGET_GAP,
        ge=1e-5,
        le=0.05,
        description="Adaptive rule only: the relative completeness gap to reach (0.001 = "
        "0.1 %). Smaller gives more complete maps for more gradient evaluations, never more "
        "than 32 per image, so the explanation budget is the same.",
    )

    @model_validator(mode="after")
    def _one_rule(self) -> IntegratedGradientsParameters:
        if self.steps is not None and "target_gap" in self.model_fields_set:
            raise ValueError("give 'steps' (a fixed rule) or 'target_gap' (adaptive), not both")
        return self


class SmoothGradParameters(_Strict):
    samples: int = Field(default=32, ge=1, le=128)
    sigma: float = Field(default=0.15, gt=0.0, le=1.0, description="Noise, fraction of range.")


class OcclusionParameters(_Strict):
    window: int | None = Field(
        default=None, ge=1, le=MAX_SIDE, description="None: a seventh of the image's shorter side."
    )
    stride: int | None = Field(
        default=None, ge=1, le=MAX_SIDE, description="None: half the window."
    )


class ShapParameters(_Strict):
    nsamples: int = Field(default=50, ge=1, le=500, description="Expected-gradients samples.")


class MethodParameters(_Strict):
    """Per-method settings; methods not listed here take none."""

    integrated_gradients: IntegratedGradientsParameters = Field(
        default_factory=IntegratedGradientsParameters
    )
    smoothgrad: SmoothGradParameters = Field(default_factory=SmoothGradParameters)
    occlusion: OcclusionParameters = Field(default_factory=OcclusionParameters)
    shap: ShapParameters = Field(default_factory=ShapParameters)


class ExplainOptions(_Strict):
    """Which explanations to compute, for which classes, encoded how, within what time."""

    methods: list[MethodName] = Field(
        default_factory=lambda: list(DEFAULT_METHODS), min_length=1, max_length=6
    )
    targets: TargetMode = Field(
        default="predicted",
        description="'predicted': the arg-max class; 'top-k': the k most probable classes; "
        "'explicit': the classes listed in 'classes'.",
    )
    k: int = Field(
        default=2,
        ge=1,
        le=MAX_CLASSES,
        description="For targets='top-k' (at most the model's number of classes).",
    )
    classes: list[ClassIndex] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CLASSES,
        description="For targets='explicit': class indices of the model (see /metadata).",
    )
    encodings: list[Encoding] = Field(
        default_factory=lambda: list[Encoding](["float16"]),  # typed: mypy infers list[str]
        min_length=1,
        max_length=3,
        description="'float16': the map as base64 little-endian float16 of values/scale; "
        "'png_heatmap' / 'png_overlay': base64 PNG images (8x enlarged).",
    )
    budget_ms: float | None = Field(
        default=None,
        gt=0,
        le=600_000,
        description="Time for all explanations of the request. A method whose measured cost "
        "does not fit in what is left is replaced by saliency, and the image is 'degraded'.",
    )
    parameters: MethodParameters = Field(default_factory=MethodParameters)

    @model_validator(mode="after")
    def _consistent(self) -> ExplainOptions:
        if self.targets == "explicit" and not self.classes:
            raise ValueError("targets='explicit' needs 'classes' (a list of class indices)")
        if self.targets != "explicit" and self.classes is not None:
            raise ValueError("'classes' is only used with targets='explicit'")
        self.methods = list(dict.fromkeys(self.methods))
        self.encodings = list(dict.fromkeys(self.encodings))
        return self


class PredictRequest(_Strict):
    """A batch of digits, and whether/how to explain the predictions."""

    images: list[ImageInput] = Field(min_length=1, max_length=MAX_IMAGES_PER_REQUEST)
    explain: ExplainOptions | bool = Field(
        default=True,
        description="true: integrated gradients and Grad-CAM for the predicted class (float16 "
        "maps); false: predictions only; an object: choose methods, targets, encodings, budget.",
    )

    def explain_options(self, default_budget_ms: float | None = None) -> ExplainOptions | None:
        """The options to apply (None: no explanations), the server's budget as fallback."""
        if self.explain is False:
            return None
        options = ExplainOptions() if self.explain is True else self.explain
        if options.budget_ms is None and default_budget_ms is not None:
            options = options.model_copy(update={"budget_ms": default_budget_ms})
        return options


class ExplanationQuality(BaseModel):
    """Completeness of integrated gradients (null for other methods): the attributions should
    add up to f(x) - f(baseline) of the explained logit."""

    baseline_output: float | None = None
    instance_output: float | None = None
    attribution_sum: float | None = None
    completeness_gap: float | None = Field(default=None, description="Relative gap.")


class ExplanationTiming(BaseModel):
    compute_ms: float = Field(description="The method's call for the whole request (all images).")
    encode_ms: float = Field(description="Encoding this map (float16 and/or PNGs).")


class Explanation(BaseModel):
    """One attribution map: ``values = float16(data) * scale`` in logit units."""

    method: MethodName = Field(description="The method that produced the map.")
    requested_method: MethodName = Field(description="Differs from 'method' when substituted.")
    target: ClassIndex
    target_name: str | None = Field(default=None, description="The target class's name.")
    polarity: Literal["positive", "absolute", "signed", "negative"] = Field(
        description="Which values mark important pixels (used for the PNGs)."
    )
    shape: list[int]
    dtype: Literal["float16"] = "float16"
    scale: float = Field(description="Largest magnitude of the map; data holds values/scale.")
    data: str | None = Field(default=None, description="base64 float16, with 'float16'.")
    png_heatmap: str | None = Field(default=None, description="base64 PNG, with 'png_heatmap'.")
    png_overlay: str | None = Field(default=None, description="base64 PNG, with 'png_overlay'.")
    quality: ExplanationQuality
    params: dict[str, Any]
    timing: ExplanationTiming


class TopClass(BaseModel):
    """One of the most probable classes of an image."""

    index: ClassIndex
    name: str
    probability: float


class ImageResult(BaseModel):
    """The answer for one image: ok, degraded (an explanation was substituted or failed), or
    error (this image could not be read; the others are unaffected)."""

    index: int
    status: ImageStatus
    label: ClassIndex | None = None
    class_name: str | None = Field(default=None, description="The name of class 'label'.")
    confidence: float | None = None
    probabilities: list[float] | None = Field(
        default=None, description="One per class, in the order of /metadata's class_names."
    )
    top_classes: list[TopClass] = Field(
        default_factory=list, description="The most probable classes (up to 5), best first."
    )
    explanations: list[Explanation] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    error: str | None = None
    preprocessing: list[str] = Field(
        default_factory=list,
        description="What was done to this image before the model saw it, in order, one line "
        "per step: 'converted: ...' (to the model's grey or colour), 'resized: ...' (to the "
        "model's input size); for MNIST-like digit models 'inverted: ...' (a dark digit on a "
        "light background, decided from the image's border, turned light on dark as the model was trained, background level "
        "removed), 'fitted: ...' (not 28x28: cropped to the ink, longer side scaled to 20 px, "
        "centred on 28x28). Empty when the image was used as sent (arrays always are).",
    )
    out_of_distribution: list[str] = Field(
        default_factory=list,
        description="The per-image checks this image failed against the served model's "
        "training reference (ink share, extent, intensity, centring; bounds at the "
        "reference's 0.5-99.5 % quantiles), e.g. 'ink_fraction 0.62 > 0.27'. Empty: within "
        "every bound. A warning, not an error: the prediction is still given.",
    )


class ModelIdentity(BaseModel):
    name: str
    version: str
    run_id: str | None
    bento_model: str


class PredictTiming(BaseModel):
    decode_ms: float
    forward_ms: float
    explain_ms: float
    total_ms: float
    methods_ms: dict[str, float] = Field(
        default_factory=dict, description="Compute time per method actually run."
    )


class BudgetReport(BaseModel):
    """What the request's explanations cost against the server's limit, and what was reduced
    to fit it (empty: nothing; then the request ran as asked)."""

    limit: int = Field(description="The server's max_explain_units per request.")
    requested_units: float = Field(description="The cost of the request as sent.")
    units: float = Field(description="The cost of what ran.")
    reductions: list[str] = Field(
        default_factory=list,
        description="In order, e.g. 'integrated_gradients steps 256 -> 32', "
        "'targets top-3 -> top-1', 'shap replaced by saliency'.",
    )


class PredictResponse(BaseModel):
    model: ModelIdentity
    request_id: str | None = Field(
        default=None, description="This answer's id, as recorded in the traffic log."
    )
    results: list[ImageResult]
    timing: PredictTiming
    explain_budget: BudgetReport | None = Field(
        default=None, description="The explanation budget of this request (null: none asked)."
    )


class ExplainerDefaults(BaseModel):
    methods: list[MethodName]
    targets: TargetMode
    encodings: list[Encoding]
    budget_ms: float | None
    parameters: MethodParameters
    fallback_method: MethodName
    available_methods: list[MethodName]
    max_units: int | None = Field(
        default=None, description="Explanation units allowed per request (max_explain_units)."
    )
    over_budget: Literal["refuse", "degrade"] | None = Field(
        default=None, description="What a request over max_units gets: 422, or reduced."
    )
    units_per_target: dict[str, float] = Field(
        default_factory=dict,
        description="Units of each method for one image and one target, default parameters.",
    )
    measured_ms_per_image: dict[str, float] = Field(
        description="Warm cost of each method for one image and one target, on this host."
    )


class RefusalInfo(BaseModel):
    version: str
    reason: str = Field(description="Why the version was not swapped in.")
    at: str


class LiveState(BaseModel):
    """How the served version got here and what the service follows."""

    following: str | None = Field(
        description="The registry alias the service follows (null: a pinned model)."
    )
    live_since: str = Field(description="When this version started answering (UTC).")
    swaps: int = Field(description="Versions swapped in since the service started.")
    last_refusal: RefusalInfo | None = Field(
        default=None, description="The last version refused at swap time, and why."
    )


class Metadata(BaseModel):
    """Where the served model comes from: registry entry, training run, data it saw."""

    name: str
    version: str
    run_id: str | None
    bento_model: str
    registry_alias: str | None
    data_digests: dict[str, str]
    data_contract_hash: str | None
    keras_backend: str | None
    trained_with: dict[str, str] = Field(default_factory=dict)
    imported_at: str | None
    class_names: list[str]
    task: dict[str, Any] = Field(
        default_factory=dict,
        description="What the model answers: height, width, channels, class_names, digit_like.",
    )
    input: dict[str, Any]
    explainer: ExplainerDefaults
    mlflow_run_url: str | None = Field(
        default=None, description="The training run in the MLflow UI, when one is configured."
    )
    live: LiveState | None = Field(default=None, description="Live swaps of this service.")


class ActivationsRequest(_Strict):
    """One digit whose layer activations to draw (what the web page shows under 'inside')."""

    image: ImageInput


class LayerActivations(BaseModel):
    name: str = Field(description="Layer name, e.g. conv1, pool1, conv2, pool2.")
    shape: list[int] = Field(description="The layer's output shape for this image (H, W, C).")
    png: str = Field(description="base64 PNG: the channels side by side, each to its own range.")


class ActivationsResponse(BaseModel):
    model: ModelIdentity
    layers: list[LayerActivations]


class ErrorResponse(BaseModel):
    """Every 4xx: a one-line message, a machine-readable code, and what exactly was wrong."""

    error: str
    code: str
    detail: list[dict[str, Any]] = Field(default_factory=list)


def example_requests() -> dict[str, dict[str, Any]]:
    """Request bodies the Swagger UI offers ("Try it out" runs them as they are)."""
    from clearsight.inference.images import decode_base64

    digit = decode_base64(EXAMPLE_PNG_BASE64)
    rows = [[round(float(v), 3) for v in row] for row in digit]
    png = {"kind": "base64", "data": EXAMPLE_PNG_BASE64}
    return {
        "default": {
            "summary": "PNG digit, default explanations (IG + Grad-CAM)",
            "value": {"images": [png]},
        },
        "array": {
            "summary": "28x28 array in 0-1, predictions only",
            "value": {
                "images": [{"kind": "array", "scale": "0-1", "data": rows}],
                "explain": False,
            },
        },
        "custom": {
            "summary": "Top-2 classes, saliency + SmoothGrad, PNG overlays, 50 ms budget",
            "value": {
                "images": [png],
                "explain": {
                    "methods": [SALIENCY, SMOOTHGRAD],
                    "targets": "top-k",
                    "k": 2,
                    "encodings": ["float16", "png_overlay"],
                    "budget_ms": 50,
                    "parameters": {SMOOTHGRAD: {"samples": 16}},
                },
            },
        },
    }


def check_explain_options(options: ExplainOptions, n_classes: int) -> None:
    """The per-request check the schema cannot make: classes the served model has.

    A 400 naming the field and the model's classes (the schema's own ceilings are those of
    any model, ``MAX_CLASSES``)."""
    from clearsight.errors import RequestError

    if options.targets == "top-k" and options.k > n_classes:
        raise RequestError(
            400,
            "invalid_request",
            f"explain.k: {options.k} classes asked, this model has {n_classes}",
            [{"loc": ["explain", "k"], "msg": f"at most {n_classes}"}],
        )
    wrong = [c for c in options.classes or [] if c >= n_classes]
    if wrong:
        raise RequestError(
            400,
            "invalid_request",
            f"explain.classes: no class {wrong[0]}; this model has classes 0-{n_classes - 1}",
            [{"loc": ["explain", "classes"], "msg": f"classes 0-{n_classes - 1}"}],
        )
