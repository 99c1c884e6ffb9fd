"""Requests/s and latency of the clearsight service beside a plain BentoML service.

Trains the seed CNN briefly on the embedded digits, stores it in a temporary BentoML store,
starts both services on loopback (``serving.service:Clearsight`` and
``benchmarks.plain_service:PlainClassifier``, same model), waits until both are ready, then
measures them one after the other at concurrency 1, 8 and 32 with keep-alive connections
(aiohttp): predictions without explanations on both, and with the default explanation
(integrated gradients + Grad-CAM, float16 maps) on clearsight. Prints a Markdown table with
the command, the device and the versions. The load generator runs on the same host.

    uv run --no-sync python benchmarks/serve.py [--requests 400] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import clearsight  # noqa: F401  (telemetry off, inherited by the servers)

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: serving/ is imported from the checkout
    sys.path.insert(0, str(REPO))
CONCURRENCY = (1, 8, 32)
TARGET_SPEEDUP = 3.0  # clearsight predictions vs plain, requests/s at concurrency 32
TARGET_P99_MS = 25.0  # clearsight predictions at concurrency 32
TARGET_EXPLAIN_P95_MS = 60.0  # one image with the default explanation (concurrency 1)


@dataclass
class Row:
    service: str
    workload: str
    concurrency: int
    requests: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def store_model(home: Path) -> tuple[str, object]:
    """Train the seed CNN (seeded, 3 epochs on 4,000 digits) into a BentoML store at ``home``."""
    os.environ["BENTOML_HOME"] = str(home)
    import bentoml
    import keras

    from clearsight.data.sources import load_embedded
    from clearsight.digits import to_model_input
    from clearsight.inference.provenance import Provenance
    from clearsight.model.cnn import build_cnn
    from serving.bento_store import MODEL_FILE

    data = load_embedded()
    keras.utils.set_random_seed(0)
    model = build_cnn()
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        to_model_input(data.images[:4000]), data.labels[:4000], batch_size=64, epochs=3, verbose=0
    )
    provenance = Provenance(
        name="clearsight-cnn", version="0", run_id=None, registry_alias="benchmark"
    )
    metadata = {k: v for k, v in provenance.to_dict().items() if v is not None}
    with bentoml.models.create("clearsight-cnn:benchmark", metadata=metadata) as stored:
        model.save(stored.path_of(MODEL_FILE))
    return "clearsight-cnn:benchmark", data.images[4000:4100]


def start(target: str, model: str, port: int, log: Path) -> subprocess.Popen:
    from serving.bento_store import serve_command

    command = serve_command(target, host="127.0.0.1", port=port, model=model)
    return subprocess.Popen(
        command, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready in {timeout_s} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


async def load(
    url: str, warm_up: list[bytes], bodies: list[bytes], concurrency: int
) -> tuple[list[float], int, float]:
    """Send ``warm_up`` then every body once, ``concurrency`` at a time, over the same
    keep-alive connections; latencies (s) and errors of ``bodies``, and their wall time."""
    import aiohttp

    headers = {"content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def run(batch: list[bytes]) -> tuple[list[float], int, float]:
            latencies: list[float] = []
            errors = 0
            queue = list(reversed(batch))

            async def worker() -> None:
                nonlocal errors
                while queue:
                    body = queue.pop()
                    start = time.perf_counter()
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        errors += response.status != 200
                    latencies.append(time.perf_counter() - start)

            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return latencies, errors, time.perf_counter() - began

        await run(warm_up)
        return await run(bodies)


def measure(
    service: str, workload: str, url: str, bodies: list[bytes], concurrency: int, n: int
) -> Row:
    import numpy as np

    warm_up = bodies[: max(20, concurrency * 4)]
    requests = [bodies[i % len(bodies)] for i in range(n)]
    latencies, errors, wall = asyncio.run(load(url, warm_up, requests, concurrency))
    ms = 1e3 * np.asarray(latencies)
    return Row(
        service,
        workload,
        concurrency,
        n,
        n / wall,
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 95)),
        float(np.percentile(ms, 99)),
        errors,
    )


def environment() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {
        n: importlib.metadata.version(n)
        for n in ("bentoml", "keras", "tensorflow", "numpy", "aiohttp")
    }
    return {
        "device": f"{cpu}, {os.cpu_count()} CPU cores (server and load generator share them)",
        "python": platform.python_version(),
        **versions,
    }


def markdown(rows: list[Row], env: dict[str, str], command: str) -> str:
    lines = [
        f"`{command}`",
        "",
        f"Device: {env['device']}; Python {env['python']}, "
        + ", ".join(f"{k} {v}" for k, v in env.items() if k not in ("device", "python")),
        "",
        "| service | workload | concurrency | requests | req/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.service} | {r.workload} | {r.concurrency} | {r.requests} | {r.rps:.0f} | "
            f"{r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.p99_ms:.1f} | {r.errors} |"
        )
    return "\n".join(lines) + "\n"


def verdicts(rows: list[Row]) -> list[str]:
    def find(service: str, workload: str, c: int) -> Row:
        return next(
            r for r in rows if (r.service, r.workload, r.concurrency) == (service, workload, c)
        )

    ours, plain = find("clearsight", "predict", 32), find("plain", "predict", 32)
    explained = find("clearsight", "predict + IG + Grad-CAM", 1)
    speedup = ours.rps / plain.rps
    return [
        f"- predictions, concurrency 32: {speedup:.1f}x the plain service's requests/s "
        f"(target >= {TARGET_SPEEDUP:g}x): {'met' if speedup >= TARGET_SPEEDUP else 'MISSED'}",
        f"- predictions, concurrency 32: p99 {ours.p99_ms:.1f} ms (target <= {TARGET_P99_MS:g} ms): "
        f"{'met' if ours.p99_ms <= TARGET_P99_MS else 'MISSED'}",
        f"- one image with the default explanation: p95 {explained.p95_ms:.1f} ms "
        f"(target <= {TARGET_EXPLAIN_P95_MS:g} ms): {'met' if explained.p95_ms <= TARGET_EXPLAIN_P95_MS else 'MISSED'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=400, help="Per clearsight prediction level."
    )
    parser.add_argument("--out", type=Path, help="Also write the rows as JSON.")
    args = parser.parse_args()
    command = "uv run --no-sync python benchmarks/serve.py " + shlex.join(sys.argv[1:])

    with tempfile.TemporaryDirectory(prefix="clearsight-bench-") as tmp:
        model, digits = store_model(Path(tmp) / "bentoml")
        arrays = [(d / 255.0).round(4).tolist() for d in digits]
        ours_plain = [
            json.dumps(
                {"images": [{"kind": "array", "scale": "0-1", "data": a}], "explain": False}
            ).encode()
            for a in arrays
        ]
        ours_explained = [
            json.dumps({"images": [{"kind": "array", "scale": "0-1", "data": a}]}).encode()
            for a in arrays
        ]
        plain_bodies = [json.dumps({"image": a}).encode() for a in arrays]

        ports = {"clearsight": free_port(), "plain": free_port()}
        logs = {name: Path(tmp) / f"{name}.log" for name in ports}
        processes = {
            "clearsight": start(
                "serving.service:Clearsight", model, ports["clearsight"], logs["clearsight"]
            ),
            "plain": start(
                "benchmarks.plain_service:PlainClassifier", model, ports["plain"], logs["plain"]
            ),
        }
        try:
            for name, process in processes.items():
                wait_ready(f"http://127.0.0.1:{ports[name]}", process, logs[name])
            ours = f"http://127.0.0.1:{ports['clearsight']}/predict"
            plain = f"http://127.0.0.1:{ports['plain']}/predict"
            rows = []
            for c in CONCURRENCY:
                rows.append(
                    measure(
                        "plain", "predict", plain, plain_bodies, c, max(100, args.requests // 4)
                    )
                )
                rows.append(measure("clearsight", "predict", ours, ours_plain, c, args.requests))
                rows.append(
                    measure(
                        "clearsight",
                        "predict + IG + Grad-CAM",
                        ours,
                        ours_explained,
                        c,
                        max(100, args.requests // 2),
                    )
                )
        finally:
            for process in processes.values():
                stop(process)
    rows.sort(key=lambda r: (r.workload, r.service, r.concurrency))
    env = environment()
    print(markdown(rows, env, command))
    print("\n".join(verdicts(rows)))
    if args.out:
        args.out.write_text(
            json.dumps(
                {"command": command, "environment": env, "rows": [asdict(r) for r in rows]},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
