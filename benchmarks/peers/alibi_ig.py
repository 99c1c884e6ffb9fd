"""alibi's ``IntegratedGradients`` on the benchmark's model and images, inside its own uv
environment (``benchmarks/.envs/alibi``): what an alibi user would write, timed the way
``benchmarks/explain.py`` times clearsight.

Attributions are of the predicted class's logit (the layer before the softmax), from a black
baseline, with alibi's trapezoid rule and the same number of steps as clearsight's default, so
the completeness gap |sum(attributions) - (f(x) - f(baseline))| / |f(x) - f(baseline)| means
the same thing on both sides (``clearsight.explain.quality``).

    python alibi_ig.py MODEL.keras IMAGES.npy OUT.json [--steps 32 --batch 64 --repeats 50]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import time

import keras
import numpy as np
from alibi.explainers import IntegratedGradients


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("images")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--method", default="riemann_trapezoid")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batch-repeats", type=int, default=3)
    args = parser.parse_args()

    model = keras.models.load_model(args.model, compile=False)
    logits = keras.Model(model.inputs, model.get_layer("probabilities").input)
    images = np.load(args.images).astype(np.float32)
    explainer = IntegratedGradients(
        logits, n_steps=args.steps, method=args.method, internal_batch_size=args.batch * 33
    )

    def run(x: np.ndarray) -> np.ndarray:
        target = np.asarray(logits(x)).argmax(1)
        return explainer.explain(x, baselines=None, target=target).attributions[0]

    run(images[:1])  # trace and warm up
    times = []
    for i in range(args.repeats):
        start = time.perf_counter()
        run(images[i % len(images)][None])
        times.append(time.perf_counter() - start)
    batch = images[: args.batch]
    run(batch)
    batch_times = []
    for _ in range(args.batch_repeats):
        start = time.perf_counter()
        attributions = run(batch)
        batch_times.append(time.perf_counter() - start)

    out = np.asarray(logits(batch))
    base = np.asarray(logits(np.zeros_like(batch)))
    target = out.argmax(1)
    rows = np.arange(len(batch))
    difference = out[rows, target] - base[rows, target]
    total = attributions.reshape(len(batch), -1).sum(1)
    gap = np.abs(total - difference) / np.maximum(np.abs(difference), 1e-12)
    ms = 1e3 * np.asarray(times)
    result = {
        "p50_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "images_per_s": len(batch) / float(np.median(batch_times)),
        "completeness_gap_median": float(np.median(gap)),
        "completeness_gap_p90": float(np.percentile(gap, 90)),
        "params": {"steps": args.steps, "method": args.method, "output": "logits"},
        "versions": {
            n: importlib.metadata.version(n) for n in ("alibi", "tensorflow", "keras", "numpy")
        },
    }
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
