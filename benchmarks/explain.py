"""Latency and throughput of every explanation method, beside shap.GradientExplainer.

Trains the seed CNN briefly on the embedded digits (seeded), then measures, warm (after the
first compile), per single image: p50/p95 latency over held-out digits, and at batch 64:
images per second. ``shap.GradientExplainer`` at its defaults (all 10 outputs, nsamples=200,
a background of 100 training digits) runs on the same model and images in the same process.

Beside them, the integrated-gradients implementations users would reach for instead, on the
same model file and images: alibi's ``IntegratedGradients`` (alibi 0.9.6, in its own uv
environment, ``benchmarks/peers/alibi_ig.py``) and Captum's where PyTorch is installed (it is
skipped, with the reason printed, where it is not). Each reports latency, images/s at batch 64
and its completeness gap (``clearsight.explain.quality``'s definition, on the predicted logit),
so speed is compared at equal quality: clearsight's IG is timed at alibi's step count (32) and
again at the fewest steps (searched in this run) whose median gap is no larger than alibi's;
the target (5x) applies to the latter. The default adaptive rule (0.1 % target gap, at most 32
evaluations) is timed too; the evaluations column is gradient evaluations per image (mean).

    uv run --no-sync python benchmarks/explain.py [--json benchmarks/results/explain.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import keras
import numpy as np

from benchmarks.machine import cpu_name
from clearsight.data.sources import load_embedded
from clearsight.digits import to_model_input
from clearsight.explain import explain, grad_cam, integrated_gradients
from clearsight.model.cnn import build_cnn

TARGET_P95_MS = 50.0  # IG (default, adaptive) + Grad-CAM, one image
TARGET_SPEEDUP = 20.0  # vs shap.GradientExplainer at its defaults
TARGET_SINGLE_MS = 5.0  # saliency alone, Grad-CAM alone
TARGET_VS_ALIBI = 5.0  # clearsight IG vs alibi IG (p50 latency and images/s), equal quality
REPO = Path(__file__).resolve().parents[1]


def train_seed(train_images: int, epochs: int, seed: int) -> tuple[keras.Model, dict]:
    data = load_embedded()
    order = np.random.default_rng(seed).permutation(len(data))
    x, y = to_model_input(data.images), data.labels
    train, test = order[:train_images], order[train_images:]
    keras.utils.set_random_seed(seed)
    model = build_cnn()
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(x[train], y[train], batch_size=64, epochs=epochs, verbose=0)
    fit_s = time.perf_counter() - start
    accuracy = float((keras.ops.convert_to_numpy(model(x[test])).argmax(1) == y[test]).mean())
    info = {"train_images": train_images, "epochs": epochs, "fit_s": fit_s, "accuracy": accuracy}
    return model, {"info": info, "x_train": x[train], "x_test": x[test]}


def latency(fn: Callable[[np.ndarray], object], images: np.ndarray, repeats: int) -> dict:
    """Warm per-image latency over ``repeats`` different images: p50, p95 in ms."""
    fn(images[:1])
    times = []
    for i in range(repeats):
        one = images[i % len(images)][None]
        start = time.perf_counter()
        fn(one)
        times.append(time.perf_counter() - start)
    ms = 1e3 * np.asarray(times)
    return {"p50_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)), "n": repeats}


def throughput(
    fn: Callable[[np.ndarray], object], batch: np.ndarray, repeats: int, warm_up: bool = True
) -> float:
    """Images per second at one batch size (median over ``repeats`` calls), after a warm-up
    call unless the function is already warm and slow (SHAP)."""
    if warm_up:
        fn(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(batch)
        times.append(time.perf_counter() - start)
    return len(batch) / float(np.median(times))


def versions() -> dict[str, str]:
    import importlib.metadata as metadata

    names = ("keras", "tensorflow", "jax", "torch", "shap", "numpy")
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"python": platform.python_version(), **found}


ALIBI = "alibi IntegratedGradients (32 steps, trapezoid)"
ADAPTIVE = "integrated_gradients (default: adaptive, 0.1 % target, <= 32 evaluations)"
STEP_CANDIDATES = (2, 3, 4, 6, 8, 12, 16, 24, 32)
CAPTUM = "captum IntegratedGradients"


def ig_peers(model: keras.Model, images: np.ndarray, batch: np.ndarray, args) -> dict:
    """alibi (own uv environment) on the same model file and images; Captum where torch is."""
    from benchmarks import peer_envs

    found: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="clearsight-explain-bench-") as tmp:
        model_file, image_file = Path(tmp) / "model.keras", Path(tmp) / "images.npy"
        model.save(model_file)
        np.save(image_file, np.concatenate([batch, images[: args.repeats]]))
        out = Path(tmp) / "alibi.json"
        try:
            python = peer_envs.ensure("alibi")
            done = subprocess.run(
                [
                    str(python),
                    str(REPO / "benchmarks" / "peers" / "alibi_ig.py"),
                    str(model_file),
                    str(image_file),
                    str(out),
                    "--batch",
                    str(args.batch),
                    "--repeats",
                    str(args.repeats),
                    "--batch-repeats",
                    str(args.batch_repeats),
                ],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-2000:])
            found[ALIBI] = json.loads(out.read_text())
        except (RuntimeError, OSError) as error:
            found[ALIBI] = {"skipped": f"alibi failed: {error}"}
        print(f"measured {ALIBI}: {found[ALIBI]}", file=sys.stderr)
    if importlib.util.find_spec("torch") is None:
        found[CAPTUM] = {
            "skipped": "PyTorch is not installed in this environment (the `torch` extra is "
            "not synced), and Captum explains PyTorch models only"
        }
    else:
        found[CAPTUM] = {"skipped": "torch is installed but the Captum runner is not written yet"}
    print(f"{CAPTUM}: {found[CAPTUM]}", file=sys.stderr)
    return found


def evaluations_of(name: str, row: dict) -> float | None:
    """Gradient evaluations per image of an IG row: measured (clearsight), or the peer's steps."""
    if "evaluations_mean" in row:
        return float(row["evaluations_mean"])
    steps = row.get("params", {}).get("steps")
    return float(steps) if name == ALIBI and steps is not None else None


def ratios_vs(peer: dict, ours: dict) -> tuple[float, float]:
    """(single-image p50 speed-up, batch images/s speed-up) of ``ours`` over ``peer``."""
    return peer["p50_ms"] / ours["p50_ms"], ours["images_per_s"] / peer["images_per_s"]


def fewest_steps_within(model: keras.Model, batch: np.ndarray, gap: float) -> tuple[int, float]:
    """The fewest integration steps whose median completeness gap on ``batch`` is at most
    ``gap`` (the peer's), and that median: speed compared at equal quality, as the issue asks,
    rather than at an equal step count that buys clearsight's trapezoid a 10x smaller gap."""
    for steps in STEP_CANDIDATES:
        median = float(np.median(integrated_gradients(model, batch, steps=steps).completeness_gap))
        if median <= gap:
            return steps, median
    return STEP_CANDIDATES[-1], median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=100, help="single-image calls per method")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batch-repeats", type=int, default=5)
    parser.add_argument("--shap-repeats", type=int, default=10, help="single-image SHAP calls")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--json", "--out", dest="out", type=Path, help="also write the numbers as JSON here"
    )
    parser.add_argument("--no-peers", action="store_true", help="skip alibi and Captum")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="The structure of `inputs`")
    import shap

    model, data = train_seed(args.train_images, args.epochs, args.seed)
    images, batch = data["x_test"], data["x_test"][: args.batch]
    background = data["x_train"][:100]
    reference = shap.GradientExplainer(model, background)

    methods: dict[str, tuple[Callable, int]] = {
        "saliency": (lambda x: explain(model, x, "saliency"), args.repeats),
        "integrated_gradients (32 steps)": (
            lambda x: integrated_gradients(model, x, steps=32),
            args.repeats,
        ),
        ADAPTIVE: (lambda x: integrated_gradients(model, x), args.repeats),
        "smoothgrad (32 samples)": (lambda x: explain(model, x, "smoothgrad"), args.repeats),
        "grad_cam": (lambda x: grad_cam(model, x), args.repeats),
        "IG (adaptive) + Grad-CAM": (
            lambda x: (integrated_gradients(model, x), grad_cam(model, x)),
            args.repeats,
        ),
        "occlusion (4x4, stride 2)": (lambda x: explain(model, x, "occlusion"), args.repeats),
        "shap via clearsight (predicted class)": (
            lambda x: explain(model, x, "shap", background=background),
            args.shap_repeats,
        ),
        "shap.GradientExplainer defaults (10 classes)": (
            lambda x: reference.shap_values(x),
            args.shap_repeats,
        ),
    }
    rows = {}
    for name, (fn, repeats) in methods.items():
        is_shap = name.startswith("shap")
        single = latency(fn, images, repeats)
        per_second = throughput(fn, batch, 1 if is_shap else args.batch_repeats, not is_shap)
        rows[name] = single | {"images_per_s": per_second}
        print(f"measured {name}: {rows[name]}", file=sys.stderr)

    ig = rows["integrated_gradients (32 steps)"]
    for name, params in (("integrated_gradients (32 steps)", {"steps": 32}), (ADAPTIVE, {})):
        quality = integrated_gradients(model, batch, **params)
        gaps, evaluations = quality.completeness_gap, quality.evaluations
        assert gaps is not None and evaluations is not None
        rows[name] |= {
            "completeness_gap_median": float(np.median(gaps)),
            "completeness_gap_p90": float(np.percentile(gaps, 90)),
            "evaluations_mean": float(evaluations.mean()),
        }
    peers = {} if args.no_peers else ig_peers(model, images, batch, args)
    for name, peer in peers.items():
        if "skipped" not in peer:
            rows[name] = peer

    shap_p50 = rows["shap.GradientExplainer defaults (10 classes)"]["p50_ms"]
    combined = rows["IG (adaptive) + Grad-CAM"]
    checks = {
        "IG+Grad-CAM p95 <= 50 ms": combined["p95_ms"] <= TARGET_P95_MS,
        "IG+Grad-CAM >= 20x faster than GradientExplainer (p50)": (
            shap_p50 / combined["p50_ms"] >= TARGET_SPEEDUP
        ),
        "saliency p95 <= 5 ms": rows["saliency"]["p95_ms"] <= TARGET_SINGLE_MS,
        "grad_cam p95 <= 5 ms": rows["grad_cam"]["p95_ms"] <= TARGET_SINGLE_MS,
    }
    alibi = peers.get(ALIBI, {})
    if "p50_ms" in alibi:
        same_steps = ratios_vs(alibi, ig)
        checks[
            f"IG (32 steps, as alibi) vs alibi: p50 {same_steps[0]:.1f}x, batch {args.batch} "
            f"{same_steps[1]:.1f}x, gap {ig['completeness_gap_median']:.4f} vs "
            f"{alibi['completeness_gap_median']:.4f} (>= 5x)"
        ] = min(same_steps) >= TARGET_VS_ALIBI
        steps, gap = fewest_steps_within(model, batch, alibi["completeness_gap_median"])
        name = f"integrated_gradients ({steps} steps: alibi's gap or smaller)"
        fn = partial(integrated_gradients, model, steps=steps)
        rows[name] = latency(fn, images, args.repeats) | {
            "images_per_s": throughput(fn, batch, args.batch_repeats),
            "completeness_gap_median": gap,
            "evaluations_mean": float(steps + 1),
        }
        matched = ratios_vs(alibi, rows[name])
        checks[
            f"IG >= 5x alibi at an equal or smaller completeness gap ({steps} steps: p50 "
            f"{matched[0]:.1f}x, batch {args.batch} {matched[1]:.1f}x, gap {gap:.4f} vs "
            f"{alibi['completeness_gap_median']:.4f})"
        ] = min(matched) >= TARGET_VS_ALIBI and gap <= alibi["completeness_gap_median"]
        adaptive = rows[ADAPTIVE]
        smaller = ratios_vs(alibi, adaptive)
        checks[
            f"IG default (adaptive, {adaptive['evaluations_mean']:.1f} evaluations) vs alibi: p50 "
            f"{smaller[0]:.1f}x, batch {args.batch} {smaller[1]:.1f}x at gap "
            f"{adaptive['completeness_gap_median']:.4f} vs {alibi['completeness_gap_median']:.4f}"
            " (>= 5x)"
        ] = min(smaller) >= TARGET_VS_ALIBI
    command = shlex.join(["python", *sys.argv])
    if os.environ.get("UV_RUN_RECURSION_DEPTH"):
        command = "uv run --no-sync " + command
    env = {
        "device": f"CPU: {cpu_name()}, {len(os.sched_getaffinity(0))} cores usable",
        "backend": keras.backend.backend(),
        "versions": versions(),
        "command": command,
        "model": data["info"],
    }
    lines = [
        "| method | p50 ms (1 image) | p95 ms (1 image) | images/s at batch "
        f"{args.batch} | completeness gap (median) | evaluations per image | p50 speed-up vs "
        "GradientExplainer |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        gap, evaluations = row.get("completeness_gap_median"), evaluations_of(name, row)
        lines.append(
            f"| {name} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {row['images_per_s']:.1f} "
            f"| {'-' if gap is None else f'{gap:.4f}'} "
            f"| {'-' if evaluations is None else f'{evaluations:.1f}'} "
            f"| {shap_p50 / row['p50_ms']:.1f}x |"
        )
    for name, peer in peers.items():
        if "skipped" in peer:
            lines.append(f"\n{name}: skipped: {peer['skipped']}")
    info = data["info"]
    print(f"device: {env['device']}")
    print(f"backend: {env['backend']}; versions: {env['versions']}")
    print(
        f"model: seed CNN, {info['epochs']} epochs on {info['train_images']} embedded digits "
        f"({info['fit_s']:.1f} s), held-out accuracy {info['accuracy']:.3f}"
    )
    print(f"command: `{command}`\n")
    print("\n".join(lines) + "\n")
    for check, passed in checks.items():
        print(f"- {'PASS' if passed else 'MISS'}: {check}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.out.with_suffix(".tmp")
        temporary.write_text(
            json.dumps(env | {"results": rows, "peers": peers, "checks": checks}, indent=2)
        )
        os.replace(temporary, args.out)


if __name__ == "__main__":
    main()
