"""The distribution stands on its own: a wheel built from the checkout, installed into a fresh
virtual environment and run from an empty directory, trains, promotes and serves.

This is what a container or another host gets: ``flows/`` and ``serving/`` are packages of the
wheel (no path edits, nothing loaded from a checkout), and the committed data contract travels
inside the library.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
PREDICT_KEY = "predict-key-for-the-wheel-test"
pytestmark = pytest.mark.slow


def uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and the locked runtime dependencies in a new venv (from uv's cache)."""
    root = tmp_path_factory.mktemp("wheel")
    run = {"check": True, "capture_output": True, "text": True, "timeout": 600}
    subprocess.run([*uv(), "build", "--wheel", "--out-dir", str(root), "-q"], cwd=REPO, **run)
    requirements = root / "requirements.txt"
    export = ["export", "--frozen", "--no-dev", "--extra", "tensorflow", "--no-emit-project"]
    subprocess.run([*uv(), *export, "--no-hashes", "-q", "-o", str(requirements)], cwd=REPO, **run)
    venv = root / "venv"
    subprocess.run([*uv(), "venv", "-q", "--python", sys.executable, str(venv)], **run)
    wheel = next(root.glob("clearsight-*.whl"))
    env = os.environ | {"VIRTUAL_ENV": str(venv)}
    subprocess.run(
        [*uv(), "pip", "install", "-q", "-r", str(requirements), str(wheel)], env=env, **run
    )
    return venv / "bin" / "clearsight"


def test_the_installed_wheel_trains_promotes_and_serves(installed: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "empty"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARSIGHT_", "MLFLOW_"))}
    env |= {"CLEARSIGHT_PROMOTION__MIN_CLASS_RECALL": "0", "COLUMNS": "200"}
    env["CLEARSIGHT_API_KEY"] = PREDICT_KEY  # the predict scope is closed on this service
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)

    def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(installed), *args],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("clearsight "), version.stderr

    retrain = cli("retrain", "--epochs", "1")
    assert retrain.returncode == 0, retrain.stdout[-3000:] + retrain.stderr[-3000:]
    assert "- champion now: v1" in retrain.stdout, retrain.stdout[-3000:]
    assert (workdir / "mlflow").is_dir() and (workdir / "data").is_dir()
    assert not any(workdir.glob("**/flows")), "nothing is loaded from or copied as a checkout"

    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [str(installed), "serve", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.5)
        blank = {"kind": "array", "scale": "0-1", "data": [[0.0] * 28] * 28}
        predict_key = {"Authorization": f"Bearer {PREDICT_KEY}"}
        anonymous = httpx.post(f"{url}/predict", json={"images": [blank]}, timeout=60)
        assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthorized"
        answer = httpx.post(
            f"{url}/predict", json={"images": [blank]}, headers=predict_key, timeout=60
        )
        assert answer.status_code == 200 and answer.json()["model"]["version"] == "1"
        # `clearsight serve` generated the admin token, owner-only, and the service takes it.
        token_file = workdir / ".clearsight" / "admin-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        admin = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        reload = f"{url}/admin/reload"
        assert httpx.post(reload, timeout=30).status_code == 401
        refused = httpx.post(reload, headers=predict_key, timeout=30)  # predict key: no admin
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
        assert httpx.post(reload, headers=admin, timeout=30).status_code == 202
        # No feedback token configured: /feedback is off for everyone, the admin too.
        feedback = httpx.post(f"{url}/feedback", json={}, headers=admin, timeout=30)
        assert feedback.status_code == 403 and "switched off" in feedback.json()["error"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()
