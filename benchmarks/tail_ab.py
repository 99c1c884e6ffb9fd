"""Interleaved A/B of clearsight's predict tail at 50 % of capacity: one switch, paired rounds.

Why a separate harness: on a shared 2-core machine the speed of the same server drifts by up to
1.7x within an hour, so two `benchmarks/serve.py` runs an hour apart cannot tell a 30 % change
in p99 from the drift. Here one champion is trained once, then each round starts clearsight
once per variant (variants differ only in environment variables, e.g. a setting of
``serving.settings``), back to back, in alternating order (A B, then B A, ...), and measures
what `benchmarks/serve.py` does: capacity with 32 closed-loop clients, then Poisson arrivals
at 50 % of that capacity. A variant is judged by its paired differences, round by round.

    uv run --no-sync python -m benchmarks.tail_ab --rounds 9 \\
        --variant "litert (default)=" --variant "keras=CLEARSIGHT_SERVING__FORWARD_RUNTIME=keras" \\
        --json benchmarks/results/tail_ab-default-2026-12-06.json

The server core's busy share (from /proc/stat) is recorded for each open-loop window: at
"50 %" of closed-loop capacity a core is usually far more than half busy (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import serve
from benchmarks.machine import environment

CAPACITY_CLIENTS = 32


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``"name=KEY=value,KEY2=value2"`` (or ``"name="``: as shipped) -> (name, environment)."""
    name, _, assignments = text.partition("=")
    if not name.strip():
        raise argparse.ArgumentTypeError(f"a variant needs a name: {text!r}")
    env = {}
    for item in filter(None, (a.strip() for a in assignments.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"not KEY=value: {item!r} in {text!r}")
        env[key] = value
    return name.strip(), env


def core_ticks(cores: set[int]) -> tuple[int, int]:
    """(busy, total) clock ticks of ``cores`` so far, from /proc/stat."""
    busy = total = 0
    with open("/proc/stat") as handle:
        for line in handle:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
                ticks = [int(f) for f in fields]
                total += sum(ticks[:8])
                busy += sum(ticks[:8]) - ticks[3] - ticks[4]  # all but idle and iowait
    return busy, total


def one_run(
    paths: dict, digits, variant: dict[str, str], args, seed: int, tmp: Path
) -> dict[str, Any]:
    """Start clearsight with ``variant``'s environment; its capacity, then 50 % of it."""
    server_cores, load_cores = serve.cores()
    server = serve.clearsight_server(paths)
    server.env = server.env | variant
    log = tmp / "server.log"
    process = serve.start(server, log, server_cores)
    try:
        serve.wait_ready(server, process, log)
        os.sched_setaffinity(0, load_cores)
        path, body = server.endpoints[serve.PREDICT]
        url = f"http://127.0.0.1:{server.port}{path}"
        bodies = [serve.encode(body(d)) for d in digits]
        _, errors, sent, wall = asyncio.run(
            serve.closed_loop(url, bodies, CAPACITY_CLIENTS, args.capacity_seconds, 1.0)
        )
        capacity = sent / wall
        rate = capacity * args.fraction
        before = core_ticks(server_cores)
        result = asyncio.run(serve.open_loop(url, bodies, rate, args.seconds, 2.0, seed))
        after = core_ticks(server_cores)
        row = serve.row(server, serve.PREDICT, "open", f"{args.fraction:.0%}", result)
        busy = (after[0] - before[0]) / max(after[1] - before[1], 1)
        return {
            "capacity_rps": round(capacity, 1),
            "capacity_errors": errors,
            "offered_rps": round(rate, 1),
            "answered_rps": round(row.rps, 1),
            "requests": row.requests,
            "errors": row.errors,
            "p50_ms": round(row.p50_ms, 2),
            "p95_ms": round(row.p95_ms, 2),
            "p99_ms": round(row.p99_ms, 2),
            "server_core_busy": round(busy, 3),
        }
    finally:
        os.sched_setaffinity(0, server_cores | load_cores)
        serve.stop(process)


def summarize(runs: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Median p99 of each variant, and each variant's paired wins against the first one."""
    by = {name: [r for r in runs if r["variant"] == name] for name in names}
    out: dict[str, Any] = {
        name: {
            "median_p99_ms": round(statistics.median(r["p99_ms"] for r in rs), 2),
            "median_capacity_rps": round(statistics.median(r["capacity_rps"] for r in rs), 1),
            "median_server_core_busy": round(
                statistics.median(r["server_core_busy"] for r in rs), 3
            ),
        }
        for name, rs in by.items()
        if rs
    }
    base = {r["round"]: r for r in by[names[0]]}
    for name in names[1:]:
        pairs = [(base[r["round"]], r) for r in by[name] if r["round"] in base]
        out[name]["lower_p99_than_" + names[0]] = sum(b["p99_ms"] > r["p99_ms"] for b, r in pairs)
        out[name]["rounds"] = len(pairs)
        out[name]["median_p99_ratio"] = round(
            statistics.median(r["p99_ms"] / b["p99_ms"] for b, r in pairs), 3
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        required=True,
        help='"name=KEY=value,..." (environment of that variant; "name=" runs as shipped); '
        "two or more, the first is the baseline of the paired comparison",
    )
    parser.add_argument("--rounds", type=int, default=9, help="Paired rounds.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Open loop, after 2 s.")
    parser.add_argument("--capacity-seconds", type=float, default=5.0, help="c=32 window.")
    parser.add_argument("--fraction", type=float, default=0.5, help="Of capacity, open loop.")
    parser.add_argument("--json", type=Path, help="Write the runs and summary as JSON.")
    args = parser.parse_args(argv)
    variants = dict(args.variant)
    if len(variants) < 2:
        parser.error("give at least two --variant, with different names")
    names = list(variants)
    header = environment()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="clearsight-tail-ab-") as tmp_name:
        tmp = Path(tmp_name)
        paths, digits, _ = serve.train_champion(tmp)
        gc.collect()
        gc.freeze()  # the load generator's own TensorFlow objects: no client GC pauses
        for round_ in range(args.rounds):
            order = names if round_ % 2 == 0 else names[::-1]
            for name in order:
                result = one_run(paths, digits, variants[name], args, round_, tmp)
                runs.append({"round": round_, "variant": name} | result)
                print(
                    f"round {round_} {name:>16}: capacity {result['capacity_rps']:.0f}/s, "
                    f"{result['answered_rps']:.0f}/s open: p50 {result['p50_ms']:.1f} "
                    f"p95 {result['p95_ms']:.1f} p99 {result['p99_ms']:.1f} ms, "
                    f"core {result['server_core_busy']:.0%} busy, {result['errors']} errors",
                    flush=True,
                )
    summary = summarize(runs, names)
    print(json.dumps(summary, indent=2))
    if args.json:
        document = {
            "environment": header,
            "variants": variants,
            "fraction": args.fraction,
            "seconds": args.seconds,
            "runs": runs,
            "summary": summary,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.json.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=2) + "\n")
        temporary.replace(args.json)


if __name__ == "__main__":
    main()
