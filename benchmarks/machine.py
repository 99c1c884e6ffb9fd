"""What machine a benchmark ran on, for the header of its table and its JSON.

Every result file carries ``environment()``: a number that cannot be tied to the CPU, the
load on it and the library versions it ran with cannot be checked, only believed.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import sys
import time
from pathlib import Path

# The packages whose versions move a benchmark's numbers; absent ones are left out.
PACKAGES = ("clearsight", "keras", "tensorflow", "jax", "torch", "numpy", "shap")


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: on a shared machine, what else was running."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:  # not offered by this platform
        return []


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Python and each installed package of ``packages`` with its version."""
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def command() -> str:
    """The command line that produced a result, as a reader would retype it."""
    line = shlex.join(["python", *sys.argv])
    if os.environ.get("UV_RUN_RECURSION_DEPTH"):
        line = "uv run --no-sync " + line
    return line


def environment() -> dict[str, object]:
    """The header of every result file: when, where, under what load, with which versions."""
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command(),
        "cpu": cpu_name(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "load_average_start": load_average(),
        "versions": versions(),
    }
