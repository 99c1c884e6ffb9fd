"""One uv environment per benchmark peer, outside the project's lock.

The peers (``mlflow models serve``, MLServer, KServe, a hand-written BentoML service, alibi)
are what a user would run *instead of* clearsight, so each gets exactly what its own docs
install, pinned, in ``benchmarks/.envs/<peer>`` (git-ignored). TensorFlow, Keras and NumPy-facing
versions follow the project's environment so that every peer runs the same model with the same
kernels. An environment is reused when its marker lists the same requirements.

    uv run --no-sync python benchmarks/peer_envs.py [PEER ...]   # create ahead of a benchmark
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

ENVS = Path(__file__).resolve().parent / ".envs"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def _ours(name: str) -> str:
    """``name==version`` as installed in the project's (locked) environment."""
    return f"{name}=={importlib.metadata.version(name)}"


def requirements(peer: str) -> list[str]:
    """What each peer's documentation installs, pinned; the model runtime as in our lock."""
    runtime = [_ours("tensorflow"), _ours("keras")]
    return {
        # `mlflow models serve --env-manager local` serves from the environment it runs in.
        "mlflow": [_ours("mlflow"), *runtime],
        # MLServer's MLflow runtime; its mlflow must load a model logged by our mlflow.
        # uvloop 0.22 made asyncio.get_event_loop() raise in MLServer 1.7.1's inference workers
        # ("There is no current event loop"): every worker died at start, so 0.21 is pinned.
        "mlserver": [
            "mlserver==1.7.1",
            "mlserver-mlflow==1.7.1",
            "uvloop==0.21.0",
            _ours("mlflow"),
            *runtime,
        ],
        # KServe's Python model server with a custom explainer running alibi's
        # IntegratedGradients in the same process. kserve 0.21.0 requires pillow>=12.3.0 (a CVE
        # floor) and alibi 0.9.6 caps pillow<11: no set satisfies both (an unpinned kserve
        # resolves to 0.20.0). KServe's own alibi explainer sample resolves it with a uv override
        # (docs/samples/explanation/alibi/alibiexplainer/pyproject.toml: pillow>=12.3.0, "alibi's
        # Pillow usage is compatible with 12.x"), so OVERRIDES does the same, within 12.x as
        # its lock. NumPy then resolves to 1.26.4 (alibi's cap; kserve allows >=1.26); click as
        # in the alibi entry below.
        "kserve": ["kserve==0.21.0", "alibi==0.9.6", "click>=8,<9", *runtime],
        "bentoml": [_ours("bentoml"), *runtime],
        # alibi 0.9.6 caps NumPy below 2; uv resolves TensorFlow against that. alibi imports
        # spaCy at import time, whose CLI needs click, which its typer-slim no longer brings.
        "alibi": ["alibi==0.9.6", "click>=8,<9", *runtime],
    }[peer]


PEERS = ("mlflow", "mlserver", "kserve", "bentoml", "alibi")

# uv's overrides (``uv pip install --overrides``): a requirement that replaces every
# package's own requirement on that package, as a peer's documentation does it.
OVERRIDES = {"kserve": ["pillow>=12.3.0,<13"]}


def python_of(peer: str) -> Path:
    return ENVS / peer / "bin" / "python"


def ensure(peer: str, log=print) -> Path:
    """Create (or reuse) the peer's environment; returns its interpreter."""
    overrides = OVERRIDES.get(peer, [])
    wanted = requirements(peer) + [f"--override={o}" for o in overrides]
    marker = ENVS / peer / ".clearsight-requirements"
    if python_of(peer).exists() and marker.exists() and marker.read_text().split() == wanted:
        return python_of(peer)
    uv = [sys.executable, "-m", "uv"]
    try:
        subprocess.run([*uv, "--version"], check=True, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError):
        uv = ["uv"]
    log(f"creating benchmarks/.envs/{peer}: {' '.join(wanted)}")
    subprocess.run(
        [*uv, "venv", "-q", "--allow-existing", "--python", PYTHON, str(ENVS / peer)], check=True
    )
    override_file = ENVS / peer / ".clearsight-overrides"
    override_file.write_text("".join(f"{o}\n" for o in overrides))
    done = subprocess.run(
        [
            *uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(python_of(peer)),
            *(["--overrides", str(override_file)] if overrides else []),
            *requirements(peer),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"installing {peer} failed:\n{done.stderr[-3000:]}")
    marker.write_text("\n".join(wanted) + "\n")
    return python_of(peer)


def version_of(peer: str, package: str) -> str:
    """A package's version inside a peer's environment."""
    return subprocess.run(
        [
            str(python_of(peer)),
            "-c",
            f"import importlib.metadata as m; print(m.version({package!r}))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


if __name__ == "__main__":
    for name in sys.argv[1:] or PEERS:
        print(name, ensure(name))
