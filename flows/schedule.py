"""``make schedule``: prefect.yaml's deployments on Prefect's own path, one command.

1. refuse, in one line, what ``prefect deploy`` would get wrong (``flows/deployments.py``);
2. without ``PREFECT_API_URL``: ``prefect server start`` on 127.0.0.1 (``PREFECT_SERVER_API_PORT``,
   else 4200 when free, else any free port), with concurrency leases kept on disk;
3. the process work pool, if missing (through the API: ``prefect work-pool create`` would fetch
   worker metadata from the internet), and the ``clearsight-registry`` limit (one slot);
4. ``prefect deploy --all``, then ``prefect worker start`` on the pool, until Ctrl-C or SIGTERM
   stops the worker (Prefect's shutdown; a second signal kills it and its flow runs), then the
   server.

The compose stack's worker runs the same (``docker/entrypoints/worker.sh``), against its server.

    make schedule          # or: python -m flows.schedule [--prefect-file F] [--with-healthcheck]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import suppress
from pathlib import Path
from typing import Any

from flows.deployments import PREFECT_YAML, DeploymentSpecError, check_file
from flows.registry_lock import persist_leases  # no Prefect import: settings not fixed yet

PREFECT = [sys.executable, "-m", "prefect"]


def _free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _pick_port() -> int:
    if wanted := os.environ.get("PREFECT_SERVER_API_PORT"):
        if not _free(int(wanted)):
            raise DeploymentSpecError(f"PREFECT_SERVER_API_PORT {wanted} is in use")
        return int(wanted)
    if _free(4200):
        return 4200
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2):
            return True
    except OSError:
        return False


def start_server() -> subprocess.Popen[bytes]:
    """``prefect server start`` on loopback, healthy; sets PREFECT_API_URL for what follows."""
    port = _pick_port()
    url = f"http://127.0.0.1:{port}/api"
    persist_leases()  # a slot held by a run that dies with this server is freed after restart
    cmd = [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(cmd, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while not _healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("prefect server did not become healthy")
            time.sleep(1)
    except BaseException:  # Ctrl-C while it starts too
        stop(server)
        raise
    os.environ["PREFECT_API_URL"] = url
    print(f"Prefect server ready: http://127.0.0.1:{port}", flush=True)
    return server


def ensure_pool(name: str) -> None:
    """A process work pool with Prefect's default job template, unless it exists."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            pool = WorkPoolCreate(name=name, type="process", base_job_template=template)
            with suppress(ObjectAlreadyExists):  # another launcher created it just now
                client.create_work_pool(pool)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group, SIGKILL after 30 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux ``/proc``): a worker starts each flow run in a
    process group of its own, so killing the worker's group would leave them running."""
    kids: list[str] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with suppress(OSError):
            kids += (task / "children").read_text().split()
    return [pid, *(p for kid in kids for p in _tree(int(kid)))]


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """Prefect's own shutdown (SIGTERM: the worker takes no new runs and winds down; measured
    1-30 s). Should it wait on a flow run, a later Ctrl-C or SIGTERM kills it and its runs."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    since = time.monotonic()
    while worker.poll() is None:
        if _signals.hurry:
            for pid in _tree(worker.pid):
                with suppress(OSError):
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
            break
        if since and time.monotonic() - since > 3:
            print("waiting for running flow runs (Ctrl-C again kills them)", flush=True)
            since = 0.0
        time.sleep(0.5)
    worker.wait()


class _Signals:
    """The first SIGINT or SIGTERM stops; another one, 2 s or more later, hurries. Repeats
    within 2 s are the same request: make and uv pass on the Ctrl-C or SIGTERM they get too."""

    first: float | None = None
    hurry = False


_signals = _Signals()


def _on_signal(signum: int, frame: Any) -> None:
    now = time.monotonic()
    if _signals.first is None:
        _signals.first = now
        raise KeyboardInterrupt
    _signals.hurry = _signals.hurry or now - _signals.first >= 2


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.schedule", description=__doc__)
    parser.add_argument("--prefect-file", type=Path, default=PREFECT_YAML)
    parser.add_argument("--with-healthcheck", action="store_true", help="worker health server")
    args = parser.parse_args(argv)
    # A background `make schedule &` ignores SIGINT: stop on SIGTERM the same way.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)
    os.environ.setdefault("CLEARSIGHT_HOME", str(PREFECT_YAML.parent))  # the pull step's cwd
    server = worker = None
    try:
        pool = check_file(args.prefect_file)
        if not os.environ.get("PREFECT_API_URL"):
            server = start_server()
        # Prefect is imported only now: it fixes its settings (PREFECT_API_URL) at import.
        from flows.registry_lock import REGISTRY_LIMIT, ensure_registry_limit

        ensure_pool(pool)
        ensure_registry_limit()
        print(f"work pool '{pool}', limit '{REGISTRY_LIMIT}' (1 slot): in place", flush=True)
        deploy = [*PREFECT, "--no-prompt", "deploy", "--all", "--prefect-file"]
        subprocess.run([*deploy, str(args.prefect_file)], check=True)
        command = [*PREFECT, "worker", "start", "--pool", pool, "--type", "process"]
        if args.with_healthcheck:
            command.append("--with-healthcheck")
        worker = subprocess.Popen(command, start_new_session=True)
        while worker.poll() is None and (server is None or server.poll() is None):
            time.sleep(1)
        sys.exit("error: the Prefect worker or server stopped")
    except (DeploymentSpecError, RuntimeError) as err:
        sys.exit(f"error: {err}")
    except subprocess.CalledProcessError as err:
        sys.exit(f"error: prefect deploy failed (exit status {err.returncode})")
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        if worker is not None:
            stop_worker(worker)
        if server is not None:
            stop(server)


if __name__ == "__main__":
    main()
