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
        # MLServer's alibi-explain runtime; the newest on PyPI is 1.6.1, so MLServer 1.6.1 and
        # its sibling runtimes (required by mlserver-alibi-explain, unused by IG; the resolver
        # would take 1.7.1) at that release; alibi 0.9.6 (the newest), not the 0.5.5 the
        # resolver falls back to.
        "mlserver-alibi": [
            "mlserver==1.6.1",
            "mlserver-alibi-explain==1.6.1",
            "mlserver-sklearn==1.6.1",
            "mlserver-xgboost==1.6.1",
            "mlserver-lightgbm==1.6.1",
            "alibi==0.9.6",
            "uvloop==0.21.0",
            *runtime,
        ],
    }[peer]


# mlserver-alibi-explain asks for alibi[tensorflow], whose extra caps TensorFlow below 2.15 (and
# so Keras 2, which cannot load our Keras 3 model); alibi itself runs on ours (the "alibi" peer),
# so the cap is overridden with our TensorFlow (uv's --override).
# KServe 0.21.0 requires pillow>=12.3.0 (a CVE floor), alibi 0.9.6 pillow<11: KServe's own alibi
# explainer sample (docs/samples/explanation/alibi) overrides alibi's cap the same way.
OVERRIDES = {
    "mlserver-alibi": [_ours("tensorflow")],
    "kserve": ["pillow>=12.3.0,<13"],
}
# MLServer 1.6.1 and mlserver-alibi-explain 1.6.1 declare Python >=3.9,<3.12.
PYTHONS = {"mlserver-alibi": "3.11"}

PEERS = ("mlflow", "mlserver", "kserve", "bentoml", "alibi", "mlserver-alibi")


def python_of(peer: str) -> Path:
    return ENVS / peer / "bin" / "python"


def ensure(peer: str, log=print) -> Path:
    """Create (or reuse) the peer's environment; returns its interpreter."""
    wanted = requirements(peer)
    overrides = OVERRIDES.get(peer, [])
    python = PYTHONS.get(peer, PYTHON)
    marker = ENVS / peer / ".clearsight-requirements"
    # The marker: the requirements, then what differs from the default (unchanged markers for
    # the peers that have neither, so their environments are reused).
    marked = [*wanted, *(f"override:{o}" for o in overrides)]
    if peer in PYTHONS:
        marked.append(f"python=={python}")
    if python_of(peer).exists() and marker.exists() and marker.read_text().split() == marked:
        return python_of(peer)
    uv = [sys.executable, "-m", "uv"]
    try:
        subprocess.run([*uv, "--version"], check=True, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError):
        uv = ["uv"]
    log(f"creating benchmarks/.envs/{peer}: {' '.join(marked)}")
    subprocess.run(
        [*uv, "venv", "-q", "--allow-existing", "--python", python, str(ENVS / peer)], check=True
    )
    override = []
    if overrides:  # uv's --override: replaces every package's own requirement on that package
        (ENVS / peer / "overrides.txt").write_text("\n".join(overrides) + "\n")
        override = ["--override", str(ENVS / peer / "overrides.txt")]
    done = subprocess.run(
        [*uv, "pip", "install", "-q", "--python", str(python_of(peer)), *override, *wanted],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"installing {peer} failed:\n{done.stderr[-3000:]}")
    marker.write_text("\n".join(marked) + "\n")
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
