"""The GPU benchmark, as ONE prepared script: JAX backend, 60,000 images, seed code vs clearsight.

In one process on the same data (the embedded training split, tiled to ``--images``; nothing
is downloaded): the seed text's training (``benchmarks/train.py``'s ``seed_code``: Keras
defaults, batch 32) and clearsight's (``clearsight.model.fitting.train``: batch 2,048, a whole
epoch in one compiled call (steps per execution = steps per epoch), data-parallel over every
visible device through Keras' distribution API when there is more than one), then integrated
gradients through the library at batch 1,024 (maps/s). Targets: clearsight's steady epoch at
least 40x faster than the seed code's (100x is the goal), and at least 10,000 IG maps/s.

    KERAS_BACKEND=jax python benchmarks/gpu.py --json benchmarks/results/gpu.json
    python benchmarks/gpu.py --tiny --json /tmp/gpu.json   # proves it runs, on a CPU, in ~1 min
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported, here or in train.py

import keras
import numpy as np

from benchmarks.train import accuracy, row, seed_code
from clearsight.config import DataSettings, TrainSettings
from clearsight.data import load, make_splits
from clearsight.digits import to_model_input
from clearsight.explain import integrated_gradients
from clearsight.model.devices import detect_device
from clearsight.model.fitting import train

TARGET_TRAIN_SPEEDUP = 40.0
GOAL_TRAIN_SPEEDUP = 100.0
TARGET_IG_MAPS_PER_S = 10_000.0


def tiled(x: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    reps = math.ceil(n / len(y))
    return np.tile(x, (reps, 1, 1))[:n], np.tile(y, reps)[:n]


def ig_throughput(model: keras.Model, images: np.ndarray, repeats: int) -> dict[str, float]:
    """Maps/s of ``integrated_gradients`` (32 steps, predicted class) on one batch, warm."""
    integrated_gradients(model, images)  # compile
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        attribution = integrated_gradients(model, images)
        seconds.append(time.perf_counter() - start)
    gap = attribution.completeness_gap
    return {
        "batch": len(images),
        "median_s": float(np.median(seconds)),
        "maps_per_s": len(images) / float(np.median(seconds)),
        "completeness_gap_median": float(np.median(gap)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=5, help="Both trainings; >= 2.")
    parser.add_argument("--batch-size", type=int, default=2048, help="clearsight's batch.")
    parser.add_argument("--learning-rate", type=float, default=4e-3)
    parser.add_argument("--ig-batch", type=int, default=1024)
    parser.add_argument("--ig-repeats", type=int, default=5)
    parser.add_argument("--distribution", default="auto", choices=("auto", "off", "data_parallel"))
    parser.add_argument("--tiny", action="store_true", help="2,048 images, 2 epochs, IG at 64.")
    parser.add_argument("--json", type=Path, help="Write the results here.")
    args = parser.parse_args()
    if args.tiny:
        args.images, args.epochs, args.batch_size, args.ig_batch = 2048, 2, 256, 64
    args.epochs = max(2, args.epochs)

    settings = DataSettings()
    splits = make_splits(load(settings), settings)
    x_train, y_train = tiled(splits.train.pixels(), splits.train.labels, args.images)
    x_val, y_val = splits.validation.pixels(), splits.validation.labels
    x_hold, y_hold = to_model_input(splits.holdout.pixels()), splits.holdout.labels
    device = detect_device()
    import jax

    devices = [str(d) for d in jax.devices()] if keras.backend.backend() == "jax" else []
    print(
        f"{len(y_train)} training images, {args.epochs} epochs, backend {device.backend}, "
        f"{device.kind}: {device.name}, devices {devices}",
        flush=True,
    )

    keras.utils.set_random_seed(0)
    seed_model, seed_seconds = seed_code(to_model_input(x_train), y_train, args.epochs)
    seed_row = row(
        "seed text (batch 32)", seed_seconds, len(y_train), accuracy(seed_model, x_hold, y_hold)
    )
    print(f"seed code: {seed_row}", flush=True)

    steps_per_epoch = math.ceil(len(y_train) / args.batch_size)
    ours = TrainSettings(
        epochs=args.epochs,
        patience=args.epochs,
        deterministic=False,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        steps_per_execution=steps_per_epoch,  # the whole epoch in one compiled call
        distribution=args.distribution,
    )
    result = train(x_train, y_train, x_val, y_val, ours, verbose=0)
    our_row = row(
        f"clearsight (batch {args.batch_size}, {steps_per_epoch} steps per call, "
        f"{result.fit_params['distribution']})",
        result.epoch_seconds,
        len(y_train),
        accuracy(result.model, x_hold, y_hold),
    )
    print(f"clearsight: {our_row}", flush=True)
    speedup = seed_row["steady_epoch_s"] / our_row["steady_epoch_s"]

    probe = tiled(to_model_input(splits.holdout.pixels())[..., 0], y_hold, args.ig_batch)[0]
    ig = ig_throughput(result.model, probe[..., None], args.ig_repeats)
    print(f"integrated gradients: {ig}", flush=True)

    checks = {
        f"steady epoch >= {TARGET_TRAIN_SPEEDUP:g}x the seed code": speedup >= TARGET_TRAIN_SPEEDUP,
        f"steady epoch >= {GOAL_TRAIN_SPEEDUP:g}x the seed code (goal)": speedup
        >= GOAL_TRAIN_SPEEDUP,
        f"IG >= {TARGET_IG_MAPS_PER_S:g} maps/s at batch {args.ig_batch}": ig["maps_per_s"]
        >= TARGET_IG_MAPS_PER_S,
        "holdout accuracy equal or better": our_row["holdout_accuracy"]
        >= seed_row["holdout_accuracy"],
    }
    print("\n| code | images/s | steady epoch (s) | first epoch (s) | holdout acc |")
    print("|---|---:|---:|---:|---:|")
    for r in (seed_row, our_row):
        print(
            f"| {r['code']} | {r['images_per_s']:.0f} | {r['steady_epoch_s']:.3f} | "
            f"{r['first_epoch_s']:.2f} | {r['holdout_accuracy']:.4f} |"
        )
    print(
        f"\nsteady-epoch speed-up {speedup:.1f}x; IG {ig['maps_per_s']:.0f} maps/s at batch "
        f"{ig['batch']} (completeness gap median {ig['completeness_gap_median']:.4f})"
    )
    for check, passed in checks.items():
        print(f"- {'met' if passed else 'MISSED'}: {check}")
    if args.json:
        report = {
            "command": " ".join(["python", *sys.argv]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "device": device.to_dict(),
            "devices": devices,
            "python": platform.python_version(),
            "keras": keras.__version__,
            "jax": jax.__version__,
            "rows": [seed_row, our_row],
            "fit_params": result.fit_params,
            "speedup": speedup,
            "integrated_gradients": ig,
            "checks": checks,
            "args": vars(args) | {"json": str(args.json)},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.json.with_suffix(".tmp")
        temporary.write_text(json.dumps(report, indent=2))
        os.replace(temporary, args.json)


if __name__ == "__main__":
    main()
