"""Which installed packages matter, and their exact versions: one place for every pin.

Two consumers need the same answer: a training run's tags (what decided its behaviour) and the
logged MLflow model's requirements (what loading it needs). Versions come from the
environment that ran, so a record never drifts from what actually executed. (A bento's
packages are the `serving` dependency group, pinned from uv.lock: serving/requirements.txt.)
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable

# Packages whose versions decide a run's behaviour (tagged on every run).
BEHAVIOUR = (
    "keras",
    "tensorflow",
    "jax",
    "torch",
    "numpy",
    "mlflow",
    "great-expectations",
    "shap",
    "prefect",
    "bentoml",
)

# What loading a logged model needs, besides its Keras backend's package.
MODEL_RUNTIME = ("keras", "numpy", "mlflow")

# The package that provides each Keras backend.
BACKEND_PACKAGE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def installed_versions(names: Iterable[str]) -> dict[str, str]:
    """``{name: version}`` of those installed here; absent ones are left out."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def pinned(names: Iterable[str]) -> list[str]:
    """``name==version`` requirement lines for those installed here, in the given order."""
    return [f"{name}=={version}" for name, version in installed_versions(names).items()]


def for_backend(names: Iterable[str], backend: str) -> list[str]:
    """``names`` plus the package of the Keras ``backend``, without repeats."""
    return list(dict.fromkeys([*names, BACKEND_PACKAGE[backend]]))
