from pathlib import Path

import pytest
from pydantic import ValidationError

from clearsight.config import Settings
from clearsight.offline import QUIET_ENVIRONMENT, QUIET_OUTPUT, TELEMETRY_OFF

from .conftest import REPO


def test_defaults_live_inside_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLEARSIGHT_HOME", raising=False)
    settings = Settings()
    assert settings.home == REPO
    assert settings.data_dir == REPO / "data"
    assert settings.mlflow_dir == REPO / "mlflow"
    assert settings.reference_profile_path == REPO / "data" / "contract" / "reference_profile.json"
    assert settings.data.source == "embedded"


def test_environment_and_toml_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "clearsight.toml"
    toml.write_text('[data]\nsource = "npz"\npath = "/x/mnist.npz"\nseed = 7\n')
    monkeypatch.setenv("CLEARSIGHT_CONFIG", str(toml))
    monkeypatch.setenv("CLEARSIGHT_DATA__SEED", "11")
    settings = Settings()
    assert settings.data.source == "npz"
    assert settings.data.path == Path("/x/mnist.npz")
    assert settings.data.seed == 11  # environment beats the file


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEARSIGHT_DATA__SOURCE", "ftp")
    with pytest.raises(ValidationError):
        Settings()


def test_importing_the_package_turns_telemetry_off_and_nothing_else() -> None:
    """In a child with none of the variables set, the import sets every telemetry opt-out and
    leaves the process's log settings (TensorFlow, MLflow progress bars) alone."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in QUIET_ENVIRONMENT}
    code = "import clearsight, os, json; print(json.dumps(dict(os.environ)))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    child_env = json.loads(out.stdout)
    for name, value in TELEMETRY_OFF.items():
        assert child_env[name] == value
    for name in QUIET_OUTPUT:
        assert name not in child_env
