"""Integrated gradients: completeness gap and gradient evaluations, fixed steps vs adaptive.

Trains the seed CNN as ``benchmarks/explain.py`` does (seeded, 3 epochs on 4,000 embedded
digits) and explains the predicted logit of the 1,000 held-out embedded digits from a black
baseline with: the old default (trapezoid, 32 steps = 33 evaluations), larger fixed step
counts for reference, and the adaptive rule (``clearsight.explain.path_integral``: target gap
0.1 %, at most 32 evaluations). Per rule: median, p95 and max of the relative completeness
gap, the share of images at or under 0.1 %, mean and max gradient evaluations per image, and
images/s over the whole set (batched, warm).

    uv run --no-sync python benchmarks/ig_quadrature.py [--json benchmarks/results/ig.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import keras
import numpy as np

from benchmarks.explain import train_seed, versions
from benchmarks.machine import cpu_name
from clearsight.explain import integrated_gradients
from clearsight.explain.path_integral import MAX_EVALUATIONS, TARGET_GAP

TARGET_MEDIAN_GAP = 1e-3  # issue #22.4: median gap at most 0.1 % ...
TARGET_MAX_EVALUATIONS = 32  # ... with at most 32 gradient evaluations per image


def measure(model: keras.Model, x: np.ndarray, **params: object) -> dict[str, float]:
    """One rule on all of ``x``, after a warm-up call on a few images."""
    integrated_gradients(model, x[:8], **params)
    start = time.perf_counter()
    result = integrated_gradients(model, x, **params)
    seconds = time.perf_counter() - start
    gap, evaluations = result.completeness_gap, result.evaluations
    assert gap is not None and evaluations is not None
    return {
        "gap_median": float(np.median(gap)),
        "gap_p95": float(np.percentile(gap, 95)),
        "gap_max": float(gap.max()),
        "share_within_target": float(np.mean(gap <= TARGET_GAP)),
        "evaluations_mean": float(evaluations.mean()),
        "evaluations_max": int(evaluations.max()),
        "images_per_s": len(x) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="held-out digits explained")
    parser.add_argument("--fixed", type=int, nargs="*", default=[32, 64, 128], help="steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", dest="out", type=Path, help="also write the numbers as JSON")
    args = parser.parse_args()

    model, data = train_seed(4000, 3, args.seed)
    x = data["x_test"][: args.images]
    rules: dict[str, dict[str, object]] = {
        f"trapezoid, {steps} steps": {"steps": steps} for steps in args.fixed
    }
    rules[f"adaptive (target {TARGET_GAP:.1%}, <= {MAX_EVALUATIONS} evaluations)"] = {}
    rows = {}
    for name, params in rules.items():
        rows[name] = measure(model, x, **params)
        print(f"measured {name}: {rows[name]}", file=sys.stderr)
    adaptive = rows[list(rules)[-1]]
    checks = {
        f"adaptive median gap <= {TARGET_MEDIAN_GAP:.1%}": (
            adaptive["gap_median"] <= TARGET_MEDIAN_GAP
        ),
        f"adaptive <= {TARGET_MAX_EVALUATIONS} evaluations per image": (
            adaptive["evaluations_max"] <= TARGET_MAX_EVALUATIONS
        ),
    }
    command = shlex.join(["python", *sys.argv])
    if os.environ.get("UV_RUN_RECURSION_DEPTH"):
        command = "uv run --no-sync " + command
    env = {
        "device": f"CPU: {cpu_name()}, {len(os.sched_getaffinity(0))} cores usable",
        "backend": keras.backend.backend(),
        "versions": versions(),
        "command": command,
        "model": data["info"],
        "images": len(x),
    }
    info = data["info"]
    print(f"device: {env['device']}")
    print(f"backend: {env['backend']}; versions: {env['versions']}")
    print(
        f"model: seed CNN, {info['epochs']} epochs on {info['train_images']} embedded digits, "
        f"held-out accuracy {info['accuracy']:.3f}; {len(x)} held-out digits, predicted logit, "
        "black baseline"
    )
    print(f"command: `{command}`\n")
    print(
        "| rule | gap median | gap p95 | gap max | images <= 0.1 % | evaluations mean | "
        "evaluations max | images/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['gap_median']:.3%} | {row['gap_p95']:.3%} | {row['gap_max']:.2%} "
            f"| {row['share_within_target']:.1%} | {row['evaluations_mean']:.1f} | "
            f"{row['evaluations_max']} | {row['images_per_s']:.0f} |"
        )
    print()
    for check, passed in checks.items():
        print(f"- {'PASS' if passed else 'MISS'}: {check}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.out.with_suffix(".tmp")
        temporary.write_text(json.dumps(env | {"results": rows, "checks": checks}, indent=2))
        os.replace(temporary, args.out)


if __name__ == "__main__":
    main()
