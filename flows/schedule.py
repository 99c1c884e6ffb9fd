"""Serve the deployments of ``prefect.yaml`` from this process: scheduled retraining, locally.

Schedules need a real Prefect server (the temporary one refuses them), so without
``PREFECT_API_URL`` this starts ``prefect server start`` on loopback, waits until it is healthy
and stops it on exit. Runs execute in this process; Ctrl-C (or SIGTERM) stops serving.

    make schedule                       # or: uv run python flows/schedule.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = ROOT / "prefect.yaml"


def schedules_from(spec: dict[str, Any]) -> list[Any]:
    """Cron and interval entries of one deployment, as Prefect schedule objects."""
    from prefect.schedules import Cron, Interval

    out = []
    for item in spec.get("schedules") or []:
        if "cron" in item:
            out.append(Cron(item["cron"], timezone=item.get("timezone")))
        elif "interval" in item:
            out.append(Interval(timedelta(seconds=item["interval"]), timezone=item.get("timezone")))
        else:
            raise ValueError(f"{PREFECT_YAML}: unsupported schedule {item}")
    return out


def load_deployments(path: Path = PREFECT_YAML) -> list[Any]:
    """Every deployment of ``prefect.yaml`` as a RunnerDeployment, ready for ``serve``."""
    from prefect.flows import load_flow_from_entrypoint

    config = yaml.safe_load(path.read_text())
    deployments = []
    for spec in config["deployments"]:
        flow = load_flow_from_entrypoint(str(ROOT / spec["entrypoint"]))
        deployments.append(
            flow.to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                parameters=spec.get("parameters") or {},
                schedules=schedules_from(spec),
            )
        )
    return deployments


@contextmanager
def prefect_server(port: int = 4200):
    """A Prefect server on loopback unless PREFECT_API_URL already names one."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    url = f"http://127.0.0.1:{port}/api"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("prefect server did not become healthy") from None
                time.sleep(1)
        os.environ["PREFECT_API_URL"] = url
        print(f"Prefect server ready: http://127.0.0.1:{port}", flush=True)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # A background `make schedule &` ignores SIGINT: stop on SIGTERM the same way.
    signal.signal(signal.SIGTERM, _stop)
    with prefect_server():
        from prefect import serve

        try:
            serve(*load_deployments())
        except KeyboardInterrupt:
            print("stopped serving")


if __name__ == "__main__":
    main()
