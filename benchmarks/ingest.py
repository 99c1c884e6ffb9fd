"""Ingest cost per batch as data versions accumulate: it must stay flat, not grow.

For each size in ``--sizes`` (10, 100 and 1,000 by default) a fresh temporary home gets a base
of ``--base-per-class`` real embedded digits per class (as an ``.npz`` source, holdout frozen
as a first training run would), then that many feedback batches of ``--images`` real digits
each, one at a time: ``write_feedback_batch`` into the incoming folder, then one
``ingest_pending`` poll (claim, both contract checks, the new data version, compaction when
due), which is what is timed. The digits are ones the base does not hold, drawn round-robin
over the classes and already inside the reference profile's per-image ranges, so every batch
is accepted and the accept path is what is measured.

Seconds per batch are reported as mean, median, and the mean of the first and the last tenth
of the batches: with ingest linear in the batch, the last tenth costs what the first did.

    uv run --no-sync python benchmarks/ingest.py [--json benchmarks/results/ingest.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import cpu_name
from clearsight.config import DataSettings, Settings
from clearsight.data.contract import check_contract, load_reference
from clearsight.data.dataset import Dataset
from clearsight.data.feedback import write_feedback_batch
from clearsight.data.ingest import ingest_pending
from clearsight.data.profile import profile_dataset
from clearsight.data.sources import load, load_embedded
from clearsight.data.splits import HoldoutStore, make_splits
from clearsight.task import DIGITS

REPO = Path(__file__).resolve().parents[1]


def split_digits(per_class: int, reference: dict) -> tuple[Dataset, list[np.ndarray]]:
    """The base (``per_class`` digits of each class) and, per class, the other digits that
    pass the per-image rules on their own (unique, inside the reference's ranges)."""
    full = load_embedded()
    base_rows = np.concatenate([np.flatnonzero(full.labels == c)[:per_class] for c in range(10)])
    base = full.subset(base_rows, "benchmark base")
    rest = np.setdiff1d(np.arange(len(full)), base_rows)
    frame = profile_dataset(full.subset(rest), "pool")
    ok = ~frame["content_hash"].isin(set(base.content_hashes())) & ~frame[
        "content_hash"
    ].duplicated(keep=False)
    for name in ("mean_intensity", "ink_fraction"):
        bounds = reference["features"][name]
        ok &= frame[name].between(bounds["q001"], bounds["q999"])
    kept = rest[ok.to_numpy()]
    return base, [kept[full.labels[kept] == c] for c in range(10)]


def batches(pool: list[np.ndarray], count: int, size: int) -> list[np.ndarray]:
    """``count`` batches of ``size`` row indices, classes round-robin (the set stays balanced)."""
    order = [int(pool[c][i]) for i in range(min(map(len, pool))) for c in range(10)]
    if count * size > len(order):
        raise SystemExit(f"{count} batches of {size} need {count * size} digits, {len(order)} left")
    return [np.asarray(order[k * size : (k + 1) * size]) for k in range(count)]


def run(count: int, size: int, base: Dataset, pool: list[np.ndarray]) -> dict:
    """Ingest ``count`` batches into a fresh home; seconds per ``ingest_pending`` poll."""
    full = load_embedded()
    with tempfile.TemporaryDirectory(prefix="clearsight-ingest-") as tmp:
        root = Path(tmp)
        np.savez(root / "base.npz", x_train=base.images, y_train=base.labels)
        settings = Settings(
            home=REPO,
            data_dir=root / "data",
            mlflow_dir=root / "mlflow",
            data=DataSettings(source="npz", path=root / "base.npz"),
        )
        source = load(settings.data)
        store = HoldoutStore(settings.holdout_dir)
        store.freeze(make_splits(source, settings.data, store).holdout)
        assert settings.incoming_dir is not None
        seconds, accepted = [], 0
        for rows in batches(pool, count, size):
            write_feedback_batch(settings.incoming_dir, full.images[rows], full.labels[rows])
            start = time.perf_counter()
            result = ingest_pending(settings)
            seconds.append(time.perf_counter() - start)
            accepted += sum(o.accepted for o in result.outcomes)
        tenth = max(1, count // 10)
        return {
            "batches": count,
            "images_per_batch": size,
            "accepted": accepted,
            "total_s": sum(seconds),
            "mean_s_per_batch": statistics.fmean(seconds),
            "median_s_per_batch": statistics.median(seconds),
            "first_tenth_mean_s": statistics.fmean(seconds[:tenth]),
            "last_tenth_mean_s": statistics.fmean(seconds[-tenth:]),
            "loaded_files": _files(settings.versions_dir),
        }


def _files(folder: Path | None) -> int:
    """Batch files a reader of the newest version opens at most (loose batches + packs)."""
    assert folder is not None
    return sum(1 for p in (folder / "batches").rglob("*.npz") if not p.name.startswith("."))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--images", type=int, default=4, help="images per feedback batch")
    parser.add_argument("--base-per-class", type=int, default=80)
    parser.add_argument(
        "--json", "--out", dest="out", type=Path, help="also write the numbers as JSON here"
    )
    args = parser.parse_args()
    reference = load_reference(REPO / "data" / "contract" / "reference_profile.json")
    base, pool = split_digits(args.base_per_class, reference)
    # Great Expectations' first validation imports and warms up for seconds: not ingest's cost.
    warm = profile_dataset(base.subset(np.arange(4)), "warm-up")
    warm["split_content_hash"], warm["holdout_leak"] = warm["content_hash"], 0
    check_contract(warm, DataSettings(), reference, task=DIGITS, per_image=True)
    rows = []
    for count in args.sizes:
        rows.append(run(count, args.images, base, pool))
        print(f"measured {count} batches: {rows[-1]}", file=sys.stderr)

    command = shlex.join(["python", *sys.argv])
    if os.environ.get("UV_RUN_RECURSION_DEPTH"):
        command = "uv run --no-sync " + command
    env = {
        "device": f"CPU: {cpu_name()}, {len(os.sched_getaffinity(0))} cores usable",
        "python": platform.python_version(),
        "command": command,
        "base_images": len(base),
    }
    print(f"device: {env['device']}")
    print(f"base: {len(base)} embedded digits; batches of {args.images} feedback digits")
    print(f"command: `{command}`\n")
    print(
        "| batches | total s | s/batch mean | s/batch median | first tenth | last tenth "
        "| batch files |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['batches']} | {r['total_s']:.1f} | {r['mean_s_per_batch']:.3f} "
            f"| {r['median_s_per_batch']:.3f} | {r['first_tenth_mean_s']:.3f} "
            f"| {r['last_tenth_mean_s']:.3f} | {r['loaded_files']} |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.out.with_suffix(".tmp")
        temporary.write_text(json.dumps(env | {"results": rows}, indent=2) + "\n")
        os.replace(temporary, args.out)


if __name__ == "__main__":
    main()
