"""Cost of one forward pass of the served model: Keras's compiled function vs LiteRT, per call.

What a lightly loaded service pays per request is one forward pass of one image, where a small
CNN's cost is mostly the runtime's fixed cost per call; batching hides it under load. This
times both runtimes the service can use (``CLEARSIGHT_SERVING__FORWARD_RUNTIME``) on the seed
CNN, one pinned core, at batch sizes 1, 4 and 16: best of ``--repeat`` timings of ``--calls``
calls each, and the largest difference between their probabilities.

    uv run --no-sync python -m benchmarks.forward_call --json benchmarks/results/forward_call-2026-12-06.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import environment

BATCHES = (1, 4, 16)


def per_call_us(forward, x: np.ndarray, calls: int, repeat: int) -> float:
    """Best of ``repeat`` means over ``calls`` calls, in microseconds."""
    forward(x)  # the first call of a size allocates
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        for _ in range(calls):
            forward(x)
        best = min(best, (time.perf_counter() - began) / calls)
    return 1e6 * best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="Calls per timing.")
    parser.add_argument("--repeat", type=int, default=5, help="Timings per case (best kept).")
    parser.add_argument("--json", type=Path, help="Write the results as JSON.")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as a served worker
    header = environment()

    import keras

    from clearsight.explain import model_gradients
    from clearsight.explain.gradients import PROBABILITIES
    from clearsight.inference.litert import litert_forward
    from clearsight.model.cnn import build_cnn

    keras.utils.set_random_seed(0)
    model = build_cnn()

    def keras_call(x: np.ndarray) -> np.ndarray:
        return model_gradients(model).scores(x, PROBABILITIES)

    images = np.random.default_rng(0).random((max(BATCHES), 28, 28, 1), dtype=np.float32)
    litert_call = litert_forward(model, keras_call, images[:8])
    if litert_call is None:
        raise SystemExit("LiteRT was not usable here (see the warning above)")
    results: dict[str, Any] = {}
    for n in BATCHES:
        x = images[:n]
        keras_us = per_call_us(keras_call, x, args.calls, args.repeat)
        litert_us = per_call_us(litert_call, x, args.calls, args.repeat)
        gap = float(np.max(np.abs(litert_call(x) - keras_call(x))))
        results[str(n)] = {
            "keras_us": round(keras_us, 1),
            "litert_us": round(litert_us, 1),
            "speedup": round(keras_us / litert_us, 2),
            "max_probability_difference": gap,
        }
        print(
            f"batch {n:>2}: Keras {keras_us:7.1f} us, LiteRT {litert_us:7.1f} us "
            f"({keras_us / litert_us:.2f}x), probabilities differ by at most {gap:.2g}",
            flush=True,
        )
    if args.json:
        document = {"environment": header, "model": "seed CNN (build_cnn)", "batches": results}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
