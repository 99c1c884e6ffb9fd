"""The Open Inference Protocol (KServe v2 / Triton HTTP) for the served model.

Schemas follow https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/,
including Triton's binary tensor extension (``Inference-Header-Content-Length``), which
tritonclient's HTTP client uses by default. One input, ``image``, of the served task's shape:
(N, H, W, C), (N, H, W) for grey models, or flat (N, H*W*C); any other shape is a 400
``invalid_tensor`` naming the shapes the model takes (the model metadata gives
``[-1, H, W, C]``). Integer datatypes are read as 0-255 and floats as 0-1 unless the input's
``parameters.scale`` says otherwise. Outputs: ``probabilities`` FP32 (N, classes), ``label``
INT64 (N,) and, when asked for, ``attribution`` FP32 (N, H, W) for the predicted class
(the output's ``parameters.method`` or the request's ``parameters.attribution_method``: any
explanation method, integrated_gradients by default; tritonclient sets the latter with
``infer(..., parameters={"attribution_method": "grad_cam"})``).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from clearsight.choices import INTEGRATED_GRADIENTS, METHOD_NAMES, MethodName
from clearsight.errors import ImageError, RequestError
from clearsight.inference.images import scaled
from clearsight.task import DIGITS, ImageTask

HEADER_LENGTH = "Inference-Header-Content-Length"
INPUT_NAME = "image"
OUTPUTS = ("probabilities", "label", "attribution")
DEFAULT_OUTPUTS = ("probabilities", "label")
DEFAULT_METHOD = INTEGRATED_GRADIENTS
MAX_IMAGES = 64  # per request, as /predict


def max_elements(task: ImageTask) -> int:
    """The most values one request may carry: ``MAX_IMAGES`` images of the task."""
    return MAX_IMAGES * task.height * task.width * task.channels


MAX_TENSOR_ELEMENTS = max_elements(DIGITS)

Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
NUMPY_TYPES: dict[str, str] = {
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


class TensorMetadata(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class InferInput(BaseModel):
    name: str = Field(examples=[INPUT_NAME])
    shape: list[int] = Field(min_length=1, max_length=4)
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = Field(
        default=None, description="Row-major values, flat or nested; absent for binary data."
    )


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """An inference request; see the module doc for the input and outputs."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferInput] = Field(min_length=1, max_length=1)
    outputs: list[RequestedOutput] | None = None


class InferOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[InferOutput]


def example_request(task: ImageTask = DIGITS) -> dict[str, Any]:
    """A JSON infer request (one blank image) for the Swagger UI."""
    zeros = [0.0] * (task.height * task.width * task.channels)
    return {
        "inputs": [
            {
                "name": INPUT_NAME,
                "shape": [1, *task.input_shape],
                "datatype": "FP32",
                "data": zeros,
            }
        ],
        "outputs": [{"name": "probabilities"}, {"name": "label"}],
    }


def model_metadata(name: str, version: str, task: ImageTask = DIGITS) -> ModelMetadata:
    """The served model's tensors: ``[-1, H, W, C]`` in, one probability per class out."""
    height, width = task.height, task.width
    return ModelMetadata(
        name=name,
        versions=[version],
        platform="keras_tensorflow",
        inputs=[TensorMetadata(name=INPUT_NAME, datatype="FP32", shape=[-1, *task.input_shape])],
        outputs=[
            TensorMetadata(name="probabilities", datatype="FP32", shape=[-1, task.n_classes]),
            TensorMetadata(name="label", datatype="INT64", shape=[-1]),
            TensorMetadata(name="attribution", datatype="FP32", shape=[-1, height, width]),
        ],
    )


def split_binary_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON part, binary part) of a request body under the binary tensor extension."""
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if not 0 <= length <= len(body):
        raise RequestError(
            400, "invalid_request", f"{HEADER_LENGTH} must be an integer in 0..{len(body)}"
        )
    return body[:length], body[length:]


def _bad(message: str) -> RequestError:
    return RequestError(400, "invalid_tensor", message)


def input_array(
    tensor: InferInput, binary: bytes, max_values: int = MAX_TENSOR_ELEMENTS
) -> np.ndarray:
    """The input tensor's values as an array of its shape (from JSON data or binary bytes);
    at most ``max_values`` of them (``max_elements`` of the served task)."""
    if tensor.name != INPUT_NAME:
        raise _bad(f"unknown input {tensor.name!r}; this model takes one input, {INPUT_NAME!r}")
    if tensor.datatype not in NUMPY_TYPES:
        raise _bad(f"datatype {tensor.datatype} is not numeric; use FP32 or UINT8")
    if any(d < 0 for d in tensor.shape):
        raise _bad(f"shape {tensor.shape} has negative dimensions")
    count = math.prod(tensor.shape)
    if count > max_values:
        raise _bad(f"at most {max_values} values per request, got {count}")
    dtype = np.dtype(NUMPY_TYPES[tensor.datatype])
    binary_size = (tensor.parameters or {}).get("binary_data_size")
    if binary_size is not None:
        if not isinstance(binary_size, int) or binary_size != len(binary):
            raise _bad(
                f"binary_data_size {binary_size!r} does not match the {len(binary)} bytes sent"
            )
        if len(binary) != count * dtype.itemsize:
            raise _bad(f"{len(binary)} bytes of {tensor.datatype} do not fill shape {tensor.shape}")
        return np.frombuffer(binary, dtype=dtype).reshape(tensor.shape)
    if tensor.data is None:
        raise _bad("input has neither 'data' nor binary_data_size")
    try:
        values = np.asarray(tensor.data, dtype=np.float64).ravel()
    except (ValueError, TypeError):
        raise _bad("'data' must hold numbers only (flat or evenly nested)") from None
    if values.size != count:
        raise _bad(f"{values.size} values do not fill shape {tensor.shape} ({count} needed)")
    return values.reshape(tensor.shape)


def accepted_shapes(task: ImageTask) -> list[str]:
    """The input shapes the served task takes, as a client would write them."""
    height, width, channels = task.input_shape
    shapes = [f"[N, {height}, {width}, {channels}]"]
    if channels == 1:
        shapes.append(f"[N, {height}, {width}]")
    return [*shapes, f"[N, {height * width * channels}]"]


def to_model_images(
    array: np.ndarray, datatype: str, scale: Any = None, task: ImageTask = DIGITS
) -> np.ndarray:
    """An input tensor -> the model's float32 (N, H, W, C) in 0-1, or a 400 naming why."""
    shape = task.input_shape
    if array.ndim == 2 and array.shape[1] == int(np.prod(shape)):
        array = array.reshape(-1, *shape)
    if array.ndim == 3 and task.channels == 1:
        array = array[..., None]
    if array.ndim != 4 or array.shape[1:] != shape or len(array) == 0:
        raise _bad(
            f"shape {list(array.shape)} does not fit this model ({task.describe()}): expected "
            f"{' or '.join(accepted_shapes(task))}"
        )
    if scale is None:
        scale = "0-1" if datatype.startswith("FP") else "0-255"
    try:
        return scaled(array, scale)  # (N, H, W, C) in 0-1
    except ImageError as err:
        raise _bad(f"input {INPUT_NAME}: {err}") from None


def _output(
    name: str, array: np.ndarray, datatype: Datatype, binary: bool, blobs: list[bytes]
) -> InferOutput:
    if binary:
        raw = np.ascontiguousarray(array, dtype=np.dtype(NUMPY_TYPES[datatype])).tobytes()
        blobs.append(raw)
        return InferOutput(
            name=name,
            shape=list(array.shape),
            datatype=datatype,
            parameters={"binary_data_size": len(raw)},
        )
    return InferOutput(
        name=name, shape=list(array.shape), datatype=datatype, data=array.ravel().tolist()
    )


async def infer(
    request: InferRequest,
    binary: bytes,
    *,
    model_name: str,
    model_version: str,
    forward: Callable[[np.ndarray], Awaitable[np.ndarray]],
    attribute: Callable[[np.ndarray, MethodName], Awaitable[np.ndarray]],
    task: ImageTask = DIGITS,
) -> tuple[bytes, int | None]:
    """Run one request on a model of ``task``; returns the response body and, for binary
    outputs, the JSON length."""
    tensor = request.inputs[0]
    x = to_model_images(
        input_array(tensor, binary, max_elements(task)),
        tensor.datatype,
        (tensor.parameters or {}).get("scale"),
        task,
    )
    wanted = request.outputs or [RequestedOutput(name=n) for n in DEFAULT_OUTPUTS]
    unknown = [o.name for o in wanted if o.name not in OUTPUTS]
    if unknown:
        raise RequestError(
            400, "invalid_request", f"unknown outputs {unknown}; this model has {list(OUTPUTS)}"
        )
    all_binary = bool((request.parameters or {}).get("binary_data_output", False))
    probabilities = np.asarray(await forward(x), dtype=np.float32)
    outputs: list[InferOutput] = []
    blobs: list[bytes] = []
    for requested in wanted:
        params = requested.parameters or {}
        binary_out = bool(params.get("binary_data", all_binary))
        if requested.name == "probabilities":
            outputs.append(_output("probabilities", probabilities, "FP32", binary_out, blobs))
        elif requested.name == "label":
            labels = probabilities.argmax(axis=1).astype(np.int64)
            outputs.append(_output("label", labels, "INT64", binary_out, blobs))
        else:
            method = params.get(
                "method", (request.parameters or {}).get("attribution_method", DEFAULT_METHOD)
            )
            if method not in METHOD_NAMES:
                raise RequestError(
                    400,
                    "invalid_request",
                    f"unknown method {method!r}; choose from {list(METHOD_NAMES)}",
                )
            maps = np.asarray(await attribute(x, method), dtype=np.float32)
            outputs.append(_output("attribution", maps, "FP32", binary_out, blobs))
    response = InferResponse(
        model_name=model_name, model_version=model_version, id=request.id, outputs=outputs
    )
    header = response.model_dump_json(exclude_none=True).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
