"""What recording an answer costs the event loop: ``AnswerLedger.record`` at a steady rate.

The service calls ``record`` on its event loop for every answered request, so the time one
call takes is time no other request is served; its slow calls become the predict tail. This
calls it at ``--rate`` per second for ``--seconds`` (one image per call, as a one-image
request) and reports the distribution of the call's duration and the write-ahead log's size.
``--baseline REV`` runs the same with ``clearsight/monitoring/answers.py`` as it was at git
revision ``REV`` first, in the same process and run, so the two are compared on one machine
in one hour.

    uv run --no-sync python -m benchmarks.ledger_insert --baseline 52686dd \\
        --json benchmarks/results/ledger_insert-2026-12-07.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from benchmarks.machine import environment

SOURCE = "src/clearsight/monitoring/answers.py"


def ledger_module(revision: str | None) -> ModuleType:
    """The answers module of the working tree, or as it was at ``revision``."""
    if revision is None:
        from clearsight.monitoring import answers

        return answers
    text = subprocess.run(
        ["git", "show", f"{revision}:{SOURCE}"], check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / f"answers_{revision}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def measure(module: ModuleType, rate: float, seconds: float, max_rows: int) -> dict[str, Any]:
    """Durations of ``record`` calls at ``rate``/s, in ms, and the log's size after."""
    folder = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    ledger = module.AnswerLedger(folder / "answers.sqlite", max_rows, 3600)
    image = np.random.default_rng(0).random((1, 28, 28))
    label, confidence = np.array([3]), np.array([0.9])
    durations = []
    began = time.perf_counter()
    for i in range(int(rate * seconds)):
        pause = began + i / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        start = time.perf_counter()
        ledger.record(f"request-{i:08d}", image, label, confidence, "1")
        durations.append(time.perf_counter() - start)
    wal = folder / "answers.sqlite-wal"
    wal_mb = wal.stat().st_size / 1e6 if wal.exists() else 0.0
    found = len(ledger.lookup(f"request-{len(durations) - 1:08d}"))
    ledger.close()
    ms = np.array(durations) * 1e3
    return {
        "calls": len(ms),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "p999_ms": float(np.percentile(ms, 99.9)),
        "max_ms": float(ms.max()),
        "over_10_ms": int((ms > 10).sum()),
        "wal_mb": wal_mb,
        "dropped": int(ledger.dropped),
        "last_answer_found": found == 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=800.0, help="record calls per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per variant")
    parser.add_argument("--max-rows", type=int, default=1_000_000, help="the service's default")
    parser.add_argument("--baseline", help="git revision of answers.py to compare with")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the service's loop
    variants = {"this tree": ledger_module(None)}
    if args.baseline:
        variants = {f"at {args.baseline}": ledger_module(args.baseline)} | variants
    rows = []
    for round_ in range(args.rounds):
        for name, module in variants.items():
            result = measure(module, args.rate, args.seconds, args.max_rows)
            rows.append({"variant": name, "round": round_} | result)
            print(
                f"round {round_} {name:>14}: p50 {result['p50_ms']:.3f} p99 {result['p99_ms']:.2f} "
                f"p99.9 {result['p999_ms']:.1f} max {result['max_ms']:.1f} ms, "
                f"{result['over_10_ms']} over 10 ms, log {result['wal_mb']:.1f} MB, "
                f"dropped {result['dropped']}",
                flush=True,
            )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "environment": environment(),
                    "rate": args.rate,
                    "seconds": args.seconds,
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
