"""Benchmark: the seed text's training code against clearsight's, same data, same epochs.

The seed (../shared/seed, section 5.2) is a plain ``model.fit(x_train, y_train, epochs=10)``
with Keras defaults (batch 32, one step per call). clearsight trains the same architecture
with large batches, several steps per compiled execution, augmentation and a cosine schedule.
Both run in this one process on the same splits; the table reports images/s, the steady-state
epoch time (median after the first), the first epoch (tracing/compilation) and holdout accuracy.

    uv run python benchmarks/train.py --epochs 20 --runs 3    # 2 CPU cores, embedded data
    KERAS_BACKEND=jax python benchmarks/train.py --tile 12    # GPU: 60,000 images
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import keras
import numpy as np

from clearsight.config import DataSettings, TrainSettings
from clearsight.data import load, make_splits
from clearsight.digits import to_model_input
from clearsight.model.devices import detect_device
from clearsight.model.fitting import EpochTimer, train


def seed_code(x_train, y_train, epochs: int) -> tuple[keras.Model, list[float]]:
    """Section 5.2 of the seed text, as written (Keras 3 spelling of tf.keras)."""
    model = keras.models.Sequential(
        [
            keras.layers.Input((28, 28, 1)),
            keras.layers.Conv2D(32, (3, 3), activation="relu"),
            keras.layers.MaxPooling2D((2, 2)),
            keras.layers.Conv2D(64, (3, 3), activation="relu"),
            keras.layers.MaxPooling2D((2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimer()
    model.fit(x_train, y_train, epochs=epochs, callbacks=[timer], verbose=0)
    return model, timer.seconds


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    probs = np.concatenate(
        [
            keras.ops.convert_to_numpy(model(x[i : i + 1024], training=False))
            for i in range(0, len(x), 1024)
        ]
    )
    return float((probs.argmax(1) == y).mean())


def row(name: str, seconds: list[float], n: int, acc: float) -> dict[str, float | str]:
    steady = float(np.median(seconds[1:] or seconds))
    return {
        "code": name,
        "images_per_s": n / steady,
        "steady_epoch_s": steady,
        "first_epoch_s": seconds[0],
        "holdout_accuracy": acc,
        "epochs": len(seconds),
    }


def one_run(x_train, y_train, splits, x_hold, y_hold, args) -> list[dict]:
    """The seed code then clearsight, same data, same epochs: one row each."""
    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    seed_model, seed_seconds = seed_code(to_model_input(x_train), y_train, args.epochs)
    print(f"seed code done in {time.perf_counter() - start:.1f} s", flush=True)

    ours = TrainSettings(
        epochs=args.epochs,
        patience=args.epochs,
        deterministic=False,
        batch_size=args.batch_size or TrainSettings().batch_size,
        learning_rate=args.learning_rate or TrainSettings().learning_rate,
    )
    result = train(
        x_train, y_train, splits.validation.pixels(), splits.validation.labels, ours, verbose=0
    )
    return [
        row(
            "seed text (model.fit defaults, batch 32)",
            seed_seconds,
            len(y_train),
            accuracy(seed_model, x_hold, y_hold),
        ),
        row(
            f"clearsight (batch {ours.batch_size}, steps/exec "
            f"{result.fit_params['steps_per_execution']}, augment)",
            result.epoch_seconds,
            len(y_train),
            accuracy(result.model, x_hold, y_hold),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--runs", type=int, default=1, help="Repeat both, report each run.")
    parser.add_argument("--tile", type=int, default=1, help="Repeat the training set (GPU).")
    parser.add_argument("--batch-size", type=int, default=None, help="clearsight batch size.")
    parser.add_argument("--learning-rate", type=float, default=None, help="clearsight Adam rate.")
    parser.add_argument("--json", "--out", dest="out", type=Path, help="Also write JSON here.")
    args = parser.parse_args()

    data = load(DataSettings())
    settings = DataSettings()
    splits = make_splits(data, settings)  # no frozen holdout: same splits on any machine
    x_train = np.tile(splits.train.pixels(), (args.tile, 1, 1))
    y_train = np.tile(splits.train.labels, args.tile)
    x_hold, y_hold = to_model_input(splits.holdout.pixels()), splits.holdout.labels
    device = detect_device()
    print(
        f"{len(y_train)} training images, {args.epochs} epochs, backend {device.backend}, "
        f"{device.kind}: {device.name}, {os.cpu_count()} CPU cores",
        flush=True,
    )
    runs = []
    for i in range(args.runs):
        with open("/proc/loadavg") as handle:
            load_average = handle.read().split()[:3]
        rows = one_run(x_train, y_train, splits, x_hold, y_hold, args)
        speedup = rows[0]["steady_epoch_s"] / rows[1]["steady_epoch_s"]
        runs.append({"run": i + 1, "rows": rows, "speedup": speedup, "load_average": load_average})
        print(f"run {i + 1}: speed-up {speedup:.2f}x (load average {load_average})", flush=True)

    print("\n| run | code | images/s | steady epoch (s) | first epoch (s) | holdout acc |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        for r in run["rows"]:
            print(
                f"| {run['run']} | {r['code']} | {r['images_per_s']:.0f} | "
                f"{r['steady_epoch_s']:.3f} | {r['first_epoch_s']:.2f} | "
                f"{r['holdout_accuracy']:.4f} |"
            )
    speedups = [run["speedup"] for run in runs]
    every = all(
        run["speedup"] >= 2.0
        and run["rows"][1]["holdout_accuracy"] >= run["rows"][0]["holdout_accuracy"]
        for run in runs
    )
    print(
        f"\nsteady-state speed-up per run: {', '.join(f'{s:.2f}x' for s in speedups)}; "
        f">= 2x at equal or better accuracy in every run: {'met' if every else 'MISSED'}; "
        f"device {device.name}; keras {keras.__version__}; python {platform.python_version()}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.out.with_suffix(".tmp")
        temporary.write_text(
            json.dumps(
                {
                    "device": device.to_dict(),
                    "runs": runs,
                    "target_met_every_run": every,
                    "args": vars(args) | {"out": str(args.out)},
                },
                indent=2,
            )
        )
        os.replace(temporary, args.out)


if __name__ == "__main__":
    main()
