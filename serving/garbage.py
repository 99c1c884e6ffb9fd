"""The garbage collector of a serving process: what warm-up left is frozen, young garbage is
collected in larger rounds.

Why both, measured on this service and on BentoML alone (``benchmarks/peers/bentoml_floor.py``,
one core, 400 requests/s): CPython collects its youngest generation every 700 new container
objects, several times per request. Each round promotes what requests still in flight hold at
that moment; those objects die later as reference cycles (asyncio futures, uvicorn and
Starlette per-request state) in the oldest generation, which only a full collection frees.
Full collections then ran every 0.5-5 s, walked 200,000-500,000 dead objects and stopped the
event loop for 50-100 ms each: the p99 of the framework alone was 30-67 ms at 400-800
requests/s. With rounds every 10,000 objects, an order of magnitude less is promoted, full
collections stop after warm-up, and that p99 was 3-6 ms. A young round of 10,000 objects
takes well under a millisecond.

Freezing comes first: TensorFlow and Keras leave ~500,000 long-lived objects that every full
collection would walk (~300 ms with the loop stopped, measured before this module existed).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000  # objects per round of the youngest generation (CPython: 700)


def settle_after_warm_up(young_threshold: int) -> None:
    """Freeze everything alive now and collect the youngest generation every
    ``young_threshold`` new objects (the older generations keep Python's ratios)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
