"""Property-based requests generated from the OpenAPI spec never get a 5xx."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from .conftest import Server

pytestmark = pytest.mark.slow


def test_no_server_errors_from_the_spec(server: Server, tmp_path) -> None:
    # FastAPI's own OpenAPI 3.1 document of the routes (BentoML's /docs.json merges the same
    # schemas under an "openapi: 3.0.2" label, which schemathesis then cannot read as 3.1).
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,fuzzing",
        "--max-examples",
        "25",
        "--max-time",
        "60",
        "--seed",
        "7",
        "--request-timeout",
        "30",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "passed" in result.stdout
    assert server.alive()
    assert httpx.get(f"{server.url}/readyz").status_code == 200
