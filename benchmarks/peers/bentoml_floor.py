"""The framework's floor: BentoML answering the /predict body with a constant, no model.

Not a peer. It runs in the project's own environment (clearsight's BentoML and FastAPI) with
clearsight's process switches (asyncio loop, access log and tracing spans off, GC frozen), and
parses the same JSON body with the same parser; what is left is what every request costs
before any model work. ``benchmarks/serve.py`` loads it like the servers it measures, so a
latency target can be read against what the framework alone reaches on the same core.
"""

from __future__ import annotations

import gc
import sys

sys.modules["uvloop"] = None  # type: ignore[assignment]  # asyncio's loop, as clearsight runs

import bentoml  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import Response  # noqa: E402
from pydantic_core import from_json  # noqa: E402

app = FastAPI()
ANSWER = b'{"results":[{"probabilities":[0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1]}]}'


@app.post("/predict")
async def predict(request: Request) -> Response:
    from_json(await request.body())
    return Response(ANSWER, media_type="application/json")


@bentoml.service(
    workers=1, logging={"access": {"enabled": False}}, tracing={"excluded_urls": ["/"]}
)
@bentoml.asgi_app(app, path="/")
class Floor:
    def __init__(self) -> None:
        gc.collect()
        gc.freeze()
