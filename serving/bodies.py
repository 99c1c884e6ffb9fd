"""Request bodies other than JSON, turned into the JSON body a route declares.

Routes declare one JSON model (which is what the OpenAPI spec documents and FastAPI
validates). Two other formats reach the same routes: image files uploaded as
``multipart/form-data`` on ``/predict``, and Triton's binary tensor extension on the Open
Inference Protocol's ``infer``. Each adapter here returns a replacement request carrying the
equivalent JSON, or None when the request is already JSON.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pydantic_core
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message

from clearsight.errors import RequestError
from clearsight.inference.oip import HEADER_LENGTH, split_binary_body
from clearsight.inference.schemas import MAX_IMAGES_PER_REQUEST

UPLOAD_FIELD = "images"
OPTIONS_FIELD = "explain"
BINARY_STATE = "oip_binary"

# What the OpenAPI spec says about uploads, merged beside the JSON body of /predict.
MULTIPART_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [UPLOAD_FIELD],
                    "properties": {
                        UPLOAD_FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "PNG or JPEG files, one image each (any size: "
                            "resized to the model's input).",
                        },
                        OPTIONS_FIELD: {
                            "type": "string",
                            "description": "JSON: true, false, or an ExplainOptions object.",
                            "example": "true",
                        },
                    },
                }
            }
        }
    }
}


class JSONRequest(Request):
    """A request whose JSON body is parsed by pydantic-core's Rust parser, not ``json.loads``.

    Why: an image travels as hundreds of numbers, and FastAPI parses every JSON body with
    ``Request.json()`` on the event loop before validating it. On a 16 KB one-digit body
    ``json.loads`` took 307 us, ``pydantic_core.from_json`` 86 us (same values, NaN and
    Infinity accepted alike). Invalid JSON still raises ``json.JSONDecodeError``, which
    FastAPI answers with its 422.
    """

    async def json(self) -> Any:
        if not hasattr(self, "_parsed_json"):
            body = await self.body()
            try:
                self._parsed_json = pydantic_core.from_json(body)
            except ValueError as err:
                raise json.JSONDecodeError(str(err), body.decode("utf-8", "replace"), 0) from None
        return self._parsed_json


def as_json_request(request: Request) -> JSONRequest:
    """``request`` (its body not read yet) as a ``JSONRequest``."""
    return (
        request if isinstance(request, JSONRequest) else JSONRequest(request.scope, request.receive)
    )


def with_json_body(request: Request, body: bytes) -> Request:
    """The same request (scope, state, client) with ``body`` as its JSON body."""
    headers = [
        (key, value)
        for key, value in request.scope["headers"]
        if key not in (b"content-type", b"content-length")
    ]
    headers += [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await request.receive()

    return JSONRequest({**request.scope, "headers": headers}, receive)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def uploads_as_json(request: Request) -> Request | None:
    """A multipart upload (``images`` files, optional ``explain`` JSON) as a PredictRequest."""
    if _media_type(request) != "multipart/form-data":
        return None
    async with request.form(max_files=MAX_IMAGES_PER_REQUEST, max_fields=4) as form:
        images = []
        for item in form.getlist(UPLOAD_FIELD):
            if not isinstance(item, UploadFile):
                raise RequestError(
                    400, "invalid_request", f"'{UPLOAD_FIELD}' must be files, got a text field"
                )
            data = await item.read()
            images.append({"kind": "base64", "data": base64.b64encode(data).decode("ascii")})
        payload: dict[str, Any] = {"images": images}
        options = form.get(OPTIONS_FIELD)
        if isinstance(options, UploadFile):
            options = (await options.read()).decode("utf-8", "replace")
        if options is not None and options.strip():
            try:
                payload["explain"] = json.loads(options)
            except json.JSONDecodeError as err:
                raise RequestError(
                    400, "invalid_request", f"'{OPTIONS_FIELD}' is not valid JSON ({err.msg})"
                ) from None
    return with_json_body(request, json.dumps(payload).encode())


async def binary_tensors_as_json(request: Request) -> Request | None:
    """Split a binary-extension infer request: JSON goes on, raw tensor bytes go to state."""
    header_length = request.headers.get(HEADER_LENGTH)
    if header_length is None:
        return None
    header, binary = split_binary_body(await request.body(), header_length)
    replacement = with_json_body(request, header)
    setattr(replacement.state, BINARY_STATE, binary)
    return replacement


def binary_part(request: Request) -> bytes:
    """The raw tensor bytes of a binary-extension request (empty for plain JSON)."""
    return getattr(request.state, BINARY_STATE, b"")
