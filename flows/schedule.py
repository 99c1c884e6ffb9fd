"""Serve the deployments of ``prefect.yaml`` from this process: scheduled retraining, locally.

Schedules need a real Prefect server (the temporary one refuses them), so without
``PREFECT_API_URL`` this starts ``prefect server start`` on loopback, waits until it is healthy
and stops it on exit. Runs execute in child processes of this one; Ctrl-C (or SIGTERM) stops
serving. Before serving it creates the ``clearsight-registry`` concurrency limit that keeps
retrains from moving registry aliases at the same time (``flows/registry_lock.py``).

Every key of a ``prefect.yaml`` deployment is either honoured (name, description, version,
tags, parameters, schedules with cron/interval/rrule, timezone, anchor, active flag and their
own parameters, paused, concurrency_limit, enforce_parameter_schema, triggers) or refused
with one line and a non-zero exit (per-deployment build/push/pull, sla, job variables,
templated ``{{ }}`` values): nothing is dropped silently. ``work_pool`` only says where a
worker would run the flow; `serve` runs it here, so the pool name is not used.

    make schedule                       # or: uv run python flows/schedule.py
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from flows.registry_lock import persist_leases  # no Prefect import: settings not fixed yet

ROOT = Path(__file__).resolve().parents[1]  # the checkout holding prefect.yaml
PREFECT_YAML = ROOT / "prefect.yaml"

# Keys of a prefect.yaml deployment that `serve` honours, each mapped in `deployment_from`.
SERVED_KEYS = {
    "name",
    "entrypoint",
    "flow_name",
    "description",
    "version",
    "version_type",
    "tags",
    "parameters",
    "enforce_parameter_schema",
    "schedule",
    "schedules",
    "paused",
    "concurrency_limit",
    "triggers",
    "work_pool",
}
SCHEDULE_KEYS = {
    "cron",
    "interval",
    "rrule",
    "timezone",
    "anchor_date",
    "active",
    "parameters",
    "slug",
    "day_or",
}
# Top-level keys for `prefect deploy` and its workers (build/push an image, pull the code):
# serving from this checkout needs none of them.
TOP_LEVEL_KEYS = {"name", "prefect-version", "build", "push", "pull", "definitions", "deployments"}


class DeploymentSpecError(ValueError):
    """A prefect.yaml setting `serve` cannot honour: fail loudly rather than drop it."""


class ServerPortBusy(RuntimeError):
    """The port for the local Prefect server is taken by something else."""


def _no_templates(where: str, value: Any) -> None:
    """``{{ ... }}`` values are resolved by `prefect deploy` only: refuse them here."""
    if isinstance(value, str) and "{{" in value:
        raise DeploymentSpecError(
            f"{where}: templated value {value!r} is resolved only by `prefect deploy`"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _no_templates(f"{where}.{key}", item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _no_templates(f"{where}[{i}]", item)


def _check_schedule(where: str, item: Any) -> None:
    if not isinstance(item, dict):
        raise DeploymentSpecError(f"{where}: a schedule is a mapping")
    unknown = set(item) - SCHEDULE_KEYS
    if unknown:
        raise DeploymentSpecError(f"{where}: schedule key(s) {sorted(unknown)} cannot be served")
    kinds = [k for k in ("cron", "interval", "rrule") if k in item]
    if len(kinds) != 1:
        raise DeploymentSpecError(f"{where}: give exactly one of cron, interval or rrule")
    if "anchor_date" in item and kinds[0] != "interval":
        raise DeploymentSpecError(f"{where}: anchor_date applies to interval schedules only")
    if "day_or" in item and kinds[0] != "cron":
        raise DeploymentSpecError(f"{where}: day_or applies to cron schedules only")


def check_spec(spec: dict[str, Any], where: str) -> None:
    """Refuse what `serve` cannot honour; plain YAML checks, so they run before a server
    starts (and before Prefect is imported, which would fix its settings too early)."""
    unknown = set(spec) - SERVED_KEYS
    if unknown:
        raise DeploymentSpecError(
            f"{where}: key(s) {sorted(unknown)} cannot be honoured by `serve` "
            "(use `prefect deploy` with a worker, or remove them)"
        )
    for key in ("name", "entrypoint"):
        if not spec.get(key):
            raise DeploymentSpecError(f"{where}: '{key}' is required")
    _no_templates(where, spec)
    if (spec.get("work_pool") or {}).get("job_variables"):
        raise DeploymentSpecError(
            f"{where}: work_pool.job_variables apply only to a worker's runs, not to `serve`"
        )
    if "schedule" in spec and "schedules" in spec:
        raise DeploymentSpecError(f"{where}: give 'schedule' or 'schedules', not both")
    for i, item in enumerate(_schedule_items(spec)):
        _check_schedule(f"{where} schedule {i}", item)


def _schedule_items(spec: dict[str, Any]) -> list[Any]:
    return spec.get("schedules") or ([spec["schedule"]] if spec.get("schedule") else [])


def schedule_from(item: dict[str, Any]) -> Any:
    """One cron, interval or rrule entry (with its timezone, anchor, active flag, parameters,
    slug, day_or) as a Prefect schedule object."""
    from prefect.schedules import Cron, Interval, RRule
    from pydantic import TypeAdapter

    common = {
        "timezone": item.get("timezone"),
        "active": item.get("active", True),
        "parameters": item.get("parameters") or {},
        "slug": item.get("slug"),
    }
    if "cron" in item:
        return Cron(item["cron"], day_or=item.get("day_or", True), **common)
    if "rrule" in item:
        return RRule(item["rrule"], **common)
    every = item["interval"]
    if not isinstance(every, int | float | timedelta):  # "PT1H", "01:00:00"
        every = TypeAdapter(timedelta).validate_python(every)
    anchor = item.get("anchor_date")
    if isinstance(anchor, str):
        anchor = datetime.fromisoformat(anchor)
    return Interval(every, anchor_date=anchor, **common)


def concurrency_from(value: Any) -> Any:
    """``concurrency_limit: 1`` or ``{limit, collision_strategy, grace_period_seconds}``."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    if value is None or isinstance(value, int):
        return value
    return ConcurrencyLimitConfig.model_validate(value)


def triggers_from(name: str, specs: list[dict[str, Any]]) -> list[Any]:
    """Deployment triggers, validated and named the way `prefect deploy` names them."""
    from prefect.events import DeploymentTriggerTypes
    from pydantic import TypeAdapter

    adapter = TypeAdapter(DeploymentTriggerTypes)
    return [
        adapter.validate_python({"name": f"{name}__automation_{i}", **spec})
        for i, spec in enumerate(specs, start=1)
    ]


def deployment_from(spec: dict[str, Any], source: str = PREFECT_YAML.name) -> Any:
    """One prefect.yaml deployment as a RunnerDeployment, every key honoured or refused.

    ``work_pool`` names the pool a worker would pull from; `serve` runs the flows here
    instead, so the pool's name and queue do not apply, and job variables (which only a
    worker applies) are refused.
    """
    from prefect.flows import load_flow_from_entrypoint

    where = f"{source}: deployment {spec.get('name')!r}"
    check_spec(spec, where)
    flow = load_flow_from_entrypoint(str(ROOT / spec["entrypoint"]))
    if spec.get("flow_name") and spec["flow_name"] != flow.name:
        raise DeploymentSpecError(
            f"{where}: flow_name {spec['flow_name']!r} but the entrypoint is flow {flow.name!r}"
        )
    tags = spec.get("tags")
    try:
        options: dict[str, Any] = {
            "name": spec["name"],
            "description": spec.get("description"),
            "version": None if spec.get("version") is None else str(spec["version"]),
            "tags": [tags] if isinstance(tags, str) else tags,
            "parameters": spec.get("parameters") or {},
            "schedules": [schedule_from(item) for item in _schedule_items(spec)],
            "paused": spec.get("paused"),
            "concurrency_limit": concurrency_from(spec.get("concurrency_limit")),
            "triggers": triggers_from(spec["name"], spec.get("triggers") or []),
        }
    except ValueError as err:  # pydantic's ValidationError too: a value Prefect refuses
        raise DeploymentSpecError(f"{where}: {str(err).splitlines()[0]}") from None
    if spec.get("version_type") is not None:
        options["version_type"] = spec["version_type"]
    if spec.get("enforce_parameter_schema") is not None:
        options["enforce_parameter_schema"] = bool(spec["enforce_parameter_schema"])
    return flow.to_deployment(**options)


def read_specs(path: Path | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The deployments of ``prefect.yaml``, checked (no Prefect import): (file name, specs)."""
    path = path or PREFECT_YAML
    config = yaml.safe_load(path.read_text()) or {}
    unknown = set(config) - TOP_LEVEL_KEYS
    if unknown:
        raise DeploymentSpecError(f"{path.name}: unknown top-level key(s) {sorted(unknown)}")
    if not config.get("deployments"):
        raise DeploymentSpecError(f"{path.name}: no deployments")
    for spec in config["deployments"]:
        check_spec(spec, f"{path.name}: deployment {spec.get('name')!r}")
    return path.name, config["deployments"]


def load_deployments(path: Path | None = None) -> list[Any]:
    """Every deployment of ``prefect.yaml`` as a RunnerDeployment, ready for ``serve``."""
    source, specs = read_specs(path)
    return [deployment_from(spec, source) for spec in specs]


def _port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def prefect_server(port: int | None = None):
    """A Prefect server on loopback unless PREFECT_API_URL already names one.

    The port is Prefect's own ``PREFECT_SERVER_API_PORT`` (4200). A port already taken (say, by
    the compose stack's server) is refused rather than mistaken for the server started here.
    """
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    port = port or int(os.environ.get("PREFECT_SERVER_API_PORT", "4200"))
    if _port_in_use(port):
        raise ServerPortBusy(
            f"port {port} is in use: set PREFECT_API_URL to serve on that server, or "
            "PREFECT_SERVER_API_PORT to start one on another port"
        )
    url = f"http://127.0.0.1:{port}/api"
    persist_leases()  # a slot held by a run that dies with this server is freed after restart
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


@contextmanager
def _exit_on(*errors: type[Exception]):
    """These errors as one line and exit status 1, without a traceback."""
    try:
        yield
    except errors as err:
        sys.exit(f"error: {err}")


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # A background `make schedule &` ignores SIGINT: stop on SIGTERM the same way.
    signal.signal(signal.SIGTERM, _stop)
    with _exit_on(DeploymentSpecError):
        source, specs = read_specs()  # a bad prefect.yaml fails before a server starts
    # Prefect is imported only once PREFECT_API_URL names the server: its settings are read
    # at import, and without the URL every client here would talk to a temporary server.
    with _exit_on(ServerPortBusy, DeploymentSpecError), prefect_server():
        from prefect import serve

        from flows.registry_lock import REGISTRY_LIMIT, ensure_registry_limit

        deployments = [deployment_from(spec, source) for spec in specs]

        ensure_registry_limit()
        print(f"global concurrency limit '{REGISTRY_LIMIT}' (1 slot) is in place", flush=True)
        try:
            serve(*deployments)
        except KeyboardInterrupt:
            print("stopped serving")


if __name__ == "__main__":
    main()
