"""Benchmark: time to accuracy, the seed text's training code against clearsight's.

What a user waits for is a model that is good enough, not an epoch: each training's holdout
accuracy is scored after every epoch (``benchmarks/time_to_target.py``; the scoring itself is
not counted), and the table reports the wall seconds from the start of training (model built,
compiled and fitted) to the first epoch at or above the target (0.98 on the embedded holdout),
with the epochs it took. Each run trains both, same splits, one seed per run (0, 1, 2, ...).

The seed (../shared/seed, section 5.2) is a plain ``model.fit(x_train, y_train, epochs=N)``
with Keras defaults (batch 32, one step per call), here with at most ``--max-epochs`` epochs.
clearsight trains the same architecture with its defaults (large batches, several steps per
compiled execution, augmentation, a cosine schedule over its planned epochs, early stopping),
at most ``min(--max-epochs, its default epochs)``. A training that never reaches the target
is reported as "not reached" with its seconds so far: the ratio is then a lower bound.

    uv run --no-sync python benchmarks/train.py --runs 3 --json benchmarks/results/train-DATE.json
    python -m benchmarks.tables      # the tables of docs/benchmarks.md, from the JSON files
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from benchmarks.machine import environment, load_average
from benchmarks.time_to_target import Curve, holdout_clock, summary
from clearsight.config import DataSettings, TrainSettings
from clearsight.data import load, make_splits
from clearsight.digits import to_model_input
from clearsight.model.devices import detect_device
from clearsight.model.fitting import train

TARGET = 0.98
# Lower thresholds read from the same curves: how the two trainings compare on the way there.
THRESHOLDS = (0.95, 0.97, 0.98)


def seed_model() -> keras.Model:
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
    return model


def seed_code(data: dict[str, Any], seed: int, args: argparse.Namespace) -> Curve:
    keras.utils.set_random_seed(seed)
    clock = holdout_clock(data["x_hold"], data["y_hold"], args.target)
    clock.start()
    model = seed_model()
    model.fit(
        to_model_input(data["x_train"]),
        data["y_train"],
        epochs=args.max_epochs,
        callbacks=[clock],
        verbose=0,
    )
    curve: Curve = clock.curve
    return curve


def clearsight_settings(seed: int, args: argparse.Namespace) -> TrainSettings:
    defaults = TrainSettings()
    return TrainSettings(
        epochs=min(args.max_epochs, defaults.epochs),
        seed=seed,
        deterministic=False,  # the seed code does not ask for deterministic kernels either
        batch_size=args.batch_size or defaults.batch_size,
        learning_rate=args.learning_rate or defaults.learning_rate,
    )


def clearsight_code(data: dict[str, Any], seed: int, args: argparse.Namespace) -> Curve:
    settings = clearsight_settings(seed, args)
    clock = holdout_clock(data["x_hold"], data["y_hold"], args.target)
    clock.start()
    train(
        data["x_train"],
        data["y_train"],
        data["x_val"],
        data["y_val"],
        settings,
        callbacks=[clock],
        verbose=0,
    )
    curve: Curve = clock.curve
    return curve


def one_training(name: str, curve: Curve, started: list[float], target: float) -> dict[str, Any]:
    return {
        "code": name,
        "load_average_start": started,
        "load_average_end": load_average(),
        "curve": curve.to_list(),
        "time_to_target": summary(curve, target),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=TARGET, help="Holdout accuracy to reach.")
    parser.add_argument("--max-epochs", type=int, default=40, help="Cap on each training's epochs.")
    parser.add_argument("--runs", type=int, default=3, help="Runs, seeded 0, 1, 2, ...")
    parser.add_argument("--tile", type=int, default=1, help="Repeat the training set.")
    parser.add_argument("--batch-size", type=int, default=None, help="clearsight batch size.")
    parser.add_argument("--learning-rate", type=float, default=None, help="clearsight Adam rate.")
    parser.add_argument("--json", "--out", dest="out", type=Path, help="Also write JSON here.")
    args = parser.parse_args()

    env = environment()
    settings = DataSettings()
    splits = make_splits(load(settings), settings)  # no frozen holdout: same splits anywhere
    data = {
        "x_train": np.tile(splits.train.pixels(), (args.tile, 1, 1)),
        "y_train": np.tile(splits.train.labels, args.tile),
        "x_val": splits.validation.pixels(),
        "y_val": splits.validation.labels,
        "x_hold": to_model_input(splits.holdout.pixels()),
        "y_hold": splits.holdout.labels,
    }
    device = detect_device()
    print(
        f"{len(data['y_train'])} training images, {len(data['y_hold'])} holdout, target "
        f"{args.target}, at most {args.max_epochs} epochs, {device.kind}: {device.name}, "
        f"load average {env['load_average_start']}",
        flush=True,
    )
    codes = {
        "seed text (model.fit defaults, batch 32)": seed_code,
        f"clearsight (defaults, batch {clearsight_settings(0, args).batch_size}, augment)": (
            clearsight_code
        ),
    }
    runs = []
    for seed in range(args.runs):
        trainings = []
        for name, code in codes.items():
            started = load_average()
            begin = time.perf_counter()
            curve = code(data, seed, args)
            trainings.append(one_training(name, curve, started, args.target))
            reached = trainings[-1]["time_to_target"]
            print(
                f"seed {seed}: {name}: {'reached' if reached['reached'] else 'NOT reached'} "
                f"{args.target} at {reached['seconds']:.1f} s, epoch {reached['epochs']} "
                f"(best {reached['best_accuracy']:.4f}; {time.perf_counter() - begin:.0f} s "
                f"with scoring)",
                flush=True,
            )
        runs.append({"seed": seed, "trainings": trainings})

    result = {
        "benchmark": "train",
        "environment": env | {"load_average_end": load_average()},
        "device": device.to_dict(),
        "data": {
            "source": "embedded",
            "train_images": len(data["y_train"]),
            "validation_images": len(data["y_val"]),
            "holdout_images": len(data["y_hold"]),
        },
        "target": args.target,
        "thresholds": list(THRESHOLDS),
        "max_epochs": args.max_epochs,
        "clearsight_settings": clearsight_settings(0, args).model_dump(exclude={"seed"}),
        "runs": runs,
        "args": vars(args) | {"out": str(args.out) if args.out else None},
    }
    from benchmarks.tables import train_table

    print("\n" + train_table(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.out.with_suffix(".tmp")
        temporary.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(temporary, args.out)


if __name__ == "__main__":
    main()
