"""The service module can be imported afresh in one process (each bento build does that)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

TWICE = """
import sys
import serving.service
sys.modules.pop("serving.service")
import serving.service
print("imported twice")
"""


def test_service_module_imports_twice_in_one_process() -> None:
    """Two promotions in one flow process build two bentos: metrics must not register twice."""
    done = subprocess.run(
        [sys.executable, "-c", TWICE], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "imported twice" in done.stdout
