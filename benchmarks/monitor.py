"""Drift monitoring: false-alarm rate on held-out digits and detection delay per shift.

Trains the seed CNN briefly on 3,000 embedded digits (seeded), computes its training reference
as a training run does (``clearsight.monitoring.reference``: input features of the training
images, predictions and integrated-gradients summaries on 1,000 validation digits), and keeps
1,000 further digits as unseen "traffic". Then, per detector:

- **false-alarm rate**: ``--windows`` windows of ``--window`` held-out digits (random draws
  from the 1,000, so windows overlap) tested for drift; the share flagged;
- **detection delay**: a stream of ``--window`` clean requests, then shifted ones (inverted,
  rotated, thick, shifted, noisy: ``clearsight.monitoring.shifts``, and a milder "tilted"
  rotation of 12-20 degrees); the monitor tests the
  newest ``--window`` records every ``--every`` requests; the delay is how many shifted
  requests were served until the first flag (median over ``--repeats`` streams; "miss" when
  not flagged within ``--window`` shifted requests).

Detectors, on the same windows in the same run:

- ``full``: every test (input KS, class prior, confidence, attribution KS), the default;
- ``inputs_only``: the same without the attribution summaries (what input-drift tools do);
- ``contract_band``: the data contract's own drift check applied to the window (mean
  intensity and ink fraction means within the ``drift_tolerance`` band of the committed
  reference profile, and 99 % of images inside its 0.1-99.9 % range);

and the per-request out-of-distribution bounds: the share of single images flagged.

    uv run --no-sync python benchmarks/monitor.py [--json benchmarks/results/monitor.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from clearsight.config import DataSettings, Settings, TrainSettings
from clearsight.data.sources import load_embedded
from clearsight.explain import model_gradients
from clearsight.explain.gradients import PROBABILITIES
from clearsight.model.fitting import train
from clearsight.monitoring.drift import compare
from clearsight.monitoring.features import image_features, integrated_gradients_features
from clearsight.monitoring.reference import Reference, compute_reference
from clearsight.monitoring.shifts import SHIFTS, rotated

Columns = dict[str, np.ndarray]


def tilted(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A milder shift than the test suite's: rotated by 12-20 degrees either way."""
    return rotated(x, rng, low=12, high=20)


BENCHMARK_SHIFTS = SHIFTS | {"tilted": tilted}


def measure(model: keras.Model, images: np.ndarray) -> Columns:
    """Everything the monitor sees per request, as columns."""
    p = np.asarray(model_gradients(model).scores(images[..., None], PROBABILITIES))
    return (
        image_features(images)
        | {f"attr:{k}": v for k, v in integrated_gradients_features(model, images).items()}
        | {"label": p.argmax(axis=1), "confidence": p.max(axis=1)}
    )


def take(columns: Columns, index: np.ndarray) -> Columns:
    return {k: v[index] for k, v in columns.items()}


def concat(a: Columns, b: Columns) -> Columns:
    return {k: np.concatenate([a[k], b[k]]) for k in a}


def model_detector(reference: Reference, attributions: bool) -> Callable[[Columns], bool]:
    def flagged(w: Columns) -> bool:
        attrs = {k[5:]: v for k, v in w.items() if k.startswith("attr:")} if attributions else None
        return compare(reference, w, w["label"], w["confidence"], attrs).drifted

    return flagged


def contract_band_detector() -> Callable[[Columns], bool]:
    profile = json.loads(Settings().reference_profile_path.read_text())["features"]
    data = DataSettings()

    def flagged(w: Columns) -> bool:
        for name in ("mean_intensity", "ink_fraction"):
            ref = profile[name]
            values = w[name]
            mean = float(np.mean(values))
            if abs(mean - ref["mean"]) > data.drift_tolerance * ref["mean"]:
                return True
            inside = np.mean((values >= ref["q001"]) & (values <= ref["q999"]))
            if inside < data.drift_mostly:
                return True
        return False

    return flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--every", type=int, default=10, help="Requests between tests.")
    parser.add_argument("--windows", type=int, default=50, help="Clean windows (false alarms).")
    parser.add_argument("--repeats", type=int, default=5, help="Streams per shift.")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="Write the results here.")
    args = parser.parse_args()
    start = time.perf_counter()

    full = load_embedded()
    x = full.images.astype(np.float32) / 255.0
    order = np.random.default_rng(0).permutation(len(x))
    fit, validation, pool = order[:3000], order[3000:4000], order[4000:]
    keras.utils.set_random_seed(0)
    model = train(
        full.images[fit],
        full.labels[fit],
        full.images[validation],
        full.labels[validation],
        TrainSettings(epochs=args.epochs, batch_size=64),
        verbose=0,
    ).model
    reference = compute_reference(model, x[fit], x[validation], "benchmark")
    clean = measure(model, x[pool])
    accuracy = float(np.mean(clean["label"] == full.labels[pool]))

    detectors = {
        "full": model_detector(reference, attributions=True),
        "inputs_only": model_detector(reference, attributions=False),
        "contract_band": contract_band_detector(),
    }
    rng = np.random.default_rng(1)
    windows = [rng.choice(len(pool), args.window, replace=False) for _ in range(args.windows)]
    false_alarms = {
        name: float(np.mean([detect(take(clean, w)) for w in windows]))
        for name, detect in detectors.items()
    }
    ood_clean = float(np.mean([bool(c) for c in reference.bounds.check(clean)]))

    delays: dict[str, dict[str, list[int | None]]] = {}
    ood_shifted: dict[str, float] = {}
    for shift, make in BENCHMARK_SHIFTS.items():
        delays[shift] = {name: [] for name in detectors}
        flagged_share = []
        for repeat in range(args.repeats):
            r = np.random.default_rng(100 + repeat)
            before = take(clean, r.choice(len(pool), args.window, replace=False))
            shifted_images = make(x[pool][r.choice(len(pool), args.window, replace=False)], r)
            after = measure(model, shifted_images)
            flagged_share.append(np.mean([bool(c) for c in reference.bounds.check(after)]))
            stream = concat(before, after)
            for name, detect in detectors.items():
                delay = None
                for served in range(args.every, args.window + 1, args.every):
                    end = args.window + served
                    if detect(take(stream, np.arange(end - args.window, end))):
                        delay = served
                        break
                delays[shift][name].append(delay)
        ood_shifted[shift] = float(np.mean(flagged_share))

    def median(values: list[int | None]) -> float | None:
        found = [v for v in values if v is not None]
        return float(np.median(found)) if len(found) * 2 > len(values) else None

    summary = {shift: {name: median(v) for name, v in per.items()} for shift, per in delays.items()}
    results = {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "settings": vars(args) | {"json": str(args.json) if args.json else None},
        "holdout_accuracy": accuracy,
        "false_alarm_rate": false_alarms,
        "detection_delay_median_requests": summary,
        "detection_delays": delays,
        "per_request_ood_share": {"clean": ood_clean} | ood_shifted,
        "seconds": time.perf_counter() - start,
    }
    print(f"model accuracy on the 1,000 unseen digits: {accuracy:.3f}")
    print(
        f"false-alarm rate over {args.windows} clean windows of {args.window}: "
        + ", ".join(f"{k} {v:.2f}" for k, v in false_alarms.items())
    )
    names = list(detectors)
    print(
        f"\ndetection delay (median requests after the shift starts; tested every "
        f"{args.every}; {args.repeats} streams; '-' = missed within {args.window}):"
    )
    print(f"{'shift':<10}" + "".join(f"{n:>15}" for n in names) + f"{'OOD share':>12}")
    for shift, per in summary.items():
        cells = "".join(f"{('-' if per[n] is None else f'{per[n]:.0f}'):>15}" for n in names)
        print(f"{shift:<10}{cells}{ood_shifted[shift]:>12.2f}")
    print(f"{'clean':<10}{'':>45}{ood_clean:>12.3f}")
    print(f"\n{results['seconds']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
