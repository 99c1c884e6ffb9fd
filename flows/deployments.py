"""Refuse, in one line, a ``prefect.yaml`` that ``prefect deploy`` would accept but get wrong.

``prefect deploy`` honours every deployment key itself; this checks only the cases where it
would go on silently or half-way (measured on Prefect 3.9.1):

- an unknown key (a typo such as ``concurency_limit``) is dropped without a word, so a
  watcher would lose its one-run-at-a-time limit;
- a malformed schedule (two of cron/interval/rrule, an unknown key) fails with the unrelated
  message "An entrypoint must be provided";
- ``sla`` creates the deployment and only then fails ("only supported on Prefect Cloud");
- ``{{ $VAR }}`` of an unset variable is stored as the literal text, so every run fails later;
- a deployment without a work pool, or on a pool other than the one the worker of
  ``make schedule`` (``flows/schedule.py``) polls, is scheduled and never run.

Plain YAML: no Prefect import, so a bad file is refused before any server starts.

    python -m flows.deployments [prefect.yaml]      # prints the work pool, or one error line
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"

# What Prefect 3.9's prefect.yaml model reads (prefect/cli/deploy/_models.py); "definitions" is
# the usual home of YAML anchors, which Prefect ignores.
TOP_LEVEL_KEYS = {"name", "prefect-version", "build", "push", "pull", "definitions", "deployments"}
DEPLOYMENT_KEYS = {
    "name", "version", "version_type", "tags", "description", "schedule", "schedules",
    "paused", "concurrency_limit", "flow_name", "entrypoint", "parameters",
    "enforce_parameter_schema", "build", "push", "pull", "work_pool", "triggers",
}  # fmt: skip
WORK_POOL_KEYS = {"name", "work_queue_name", "job_variables"}
CONCURRENCY_KEYS = {"limit", "collision_strategy", "grace_period_seconds"}
SCHEDULE_KEYS = {
    "cron", "interval", "rrule", "timezone", "anchor_date", "active", "parameters", "slug",
    "replaces", "day_or",
}  # fmt: skip
ENV_PLACEHOLDER = re.compile(r"{{\s*\$(\w+)\s*}}")


class DeploymentSpecError(ValueError):
    """A prefect.yaml that Prefect would deploy wrongly or not at all."""


def _known(where: str, mapping: Any, keys: set[str]) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        raise DeploymentSpecError(f"{where}: expected a mapping")
    if unknown := sorted(set(mapping) - keys):
        raise DeploymentSpecError(f"{where}: unknown key(s) {unknown} (Prefect would ignore them)")
    return mapping


def _unset_variables(where: str, value: Any) -> None:
    """Prefect leaves ``{{ $VAR }}`` of an unset variable as literal text."""
    if isinstance(value, str):
        for name in ENV_PLACEHOLDER.findall(value):
            if name not in os.environ:
                raise DeploymentSpecError(f"{where}: environment variable {name} is not set")
    elif isinstance(value, dict):
        for key, item in value.items():
            _unset_variables(f"{where}.{key}", item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _unset_variables(f"{where}[{i}]", item)


def _check_deployment(where: str, spec: Any) -> str:
    spec = _known(where, spec, DEPLOYMENT_KEYS | {"sla"})
    if "sla" in spec:
        raise DeploymentSpecError(f"{where}: 'sla' works on Prefect Cloud only")
    for key in ("name", "entrypoint"):
        if not spec.get(key):
            raise DeploymentSpecError(f"{where}: '{key}' is required")
    if isinstance(spec.get("concurrency_limit"), dict):
        _known(f"{where}.concurrency_limit", spec["concurrency_limit"], CONCURRENCY_KEYS)
    if "schedule" in spec and "schedules" in spec:
        raise DeploymentSpecError(f"{where}: give 'schedule' or 'schedules', not both")
    items = spec.get("schedules") or ([spec["schedule"]] if spec.get("schedule") else [])
    for i, item in enumerate(items):
        item = _known(f"{where} schedule {i}", item, SCHEDULE_KEYS)
        if sum(kind in item for kind in ("cron", "interval", "rrule")) != 1:
            raise DeploymentSpecError(
                f"{where} schedule {i}: give exactly one of cron, interval, rrule"
            )
    pool = _known(f"{where}.work_pool", spec.get("work_pool") or {}, WORK_POOL_KEYS)
    if not pool.get("name"):
        raise DeploymentSpecError(f"{where}: 'work_pool.name' is required (the worker's pool)")
    return str(pool["name"])


def check(config: Any, source: str = "prefect.yaml") -> str:
    """The one work pool every deployment of ``config`` names; raises DeploymentSpecError."""
    config = _known(source, config or {}, TOP_LEVEL_KEYS)
    if not config.get("deployments"):
        raise DeploymentSpecError(f"{source}: no deployments")
    _unset_variables(source, config)
    pools = {
        _check_deployment(f"{source}: deployment {spec.get('name')!r}", spec)
        for spec in config["deployments"]
    }
    if len(pools) > 1:
        raise DeploymentSpecError(
            f"{source}: deployments name pools {sorted(pools)}; one worker polls one"
        )
    return pools.pop()


def check_file(path: Path = PREFECT_YAML) -> str:
    """``check`` on a file: the work pool its deployments run on."""
    return check(yaml.safe_load(path.read_text()), path.name)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else PREFECT_YAML
    try:
        print(check_file(path))
    except DeploymentSpecError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
