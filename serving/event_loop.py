"""Which event loop the service's uvicorn runs: asyncio's by default, not uvloop.

Why: since libuv 1.45 (libuv/libuv#3696, bundled by uvloop 0.18+) a uvloop server accepts one
connection per loop iteration. While requests keep the loop busy (JSON decoding, validation,
encoding of images), new connections then wait in the kernel's accept queue, 2,048 deep, where
no bound of ours can see or refuse them: at 4x capacity nothing was shed and half the clients
timed out (measured, ``tests/serving/test_overload.py``). asyncio's selector loop accepts every
waiting connection when the listening socket is readable, so the excess reaches
the load shedder (``serving.shedding``) at once and is refused with a 503 in well under a millisecond.

BentoML builds uvicorn's configuration itself (loop "auto": uvloop when importable), so the
choice is made by what ``import uvloop`` finds in the worker process, before the server starts.
``CLEARSIGHT_SERVING__EVENT_LOOP=uvloop`` keeps uvloop (a little faster per request, no load
shedding under connection floods).

Side effects, both latent today: ``import uvloop`` fails in the whole process, so BentoML's
``make_safe_connect`` (used only by APIs with file fields fetched from a URL; clearsight has
none) would fail; and processes that import the service module to build a bento (CLI, flows)
run without uvloop too, which they never used.
"""

from __future__ import annotations

import sys
from typing import Literal

EventLoop = Literal["asyncio", "uvloop"]


def choose_event_loop(loop: EventLoop) -> None:
    """Make uvicorn's "auto" loop resolve to ``loop`` in this process."""
    if loop == "asyncio":
        sys.modules["uvloop"] = None  # type: ignore[assignment]  # "import uvloop" now fails
    elif sys.modules.get("uvloop", 0) is None:
        del sys.modules["uvloop"]
