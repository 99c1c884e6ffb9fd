"""clearsight's garbage-collection switch, offered to every peer's processes by ``serve.py``.

Python imports ``sitecustomize`` at start-up from ``PYTHONPATH``, so this sets the youngest
generation's threshold in each peer's server and workers without touching their code.
clearsight sets the same threshold after its warm-up (``serving/garbage.py`` says why and
what it measured); peers that freeze their model's objects after loading still do so.
"""

import gc
import os

if threshold := os.environ.get("PEER_GC_YOUNG_THRESHOLD"):
    _, middle, old = gc.get_threshold()
    gc.set_threshold(int(threshold), middle, old)
