"""The service as BentoML users meet it: typed APIs for BentoML's clients, `bentoml build`
from the checkout (offline), and a bento whose packages are pinned from uv.lock."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import bentoml
import numpy as np
import pytest

from .conftest import REPO, Built, Registry, Server, offline_probabilities

REQUIREMENTS = REPO / "serving" / "requirements.txt"


def array_items(x: np.ndarray) -> list[dict]:
    return [{"kind": "array", "scale": "0-1", "data": image.tolist()} for image in x]


def as_dict(answer: object) -> dict:
    """BentoML's clients return the output model or its JSON, depending on the version."""
    return answer if isinstance(answer, dict) else answer.model_dump()  # type: ignore[attr-defined]


def test_sync_client_classify_and_explain(server: Server, digits) -> None:
    images, _ = digits
    x = images[[0, 41, 82]].astype(np.float32) / 255.0
    expected = offline_probabilities(server.model, x)
    with bentoml.SyncHTTPClient(server.url, timeout=60) as client:
        classified = as_dict(client.classify(images=array_items(x)))
        explained = as_dict(
            client.explain(
                images=array_items(x[:1]),
                options={"methods": ["integrated_gradients"], "encodings": ["float16"]},
            )
        )
    probabilities = np.array([r["probabilities"] for r in classified["results"]])
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert all(r["explanations"] == [] for r in classified["results"])
    (result,) = explained["results"]
    assert result["label"] == int(expected[0].argmax())
    assert [e["method"] for e in result["explanations"]] == ["integrated_gradients"]
    assert result["explanations"][0]["quality"]["completeness_gap"] < 0.05


def test_typed_api_errors_are_4xx_not_500(server: Server) -> None:
    bad = [{"kind": "base64", "data": "bm90IGFuIGltYWdl"}]  # "not an image"
    with (
        bentoml.SyncHTTPClient(server.url, timeout=60) as client,
        pytest.raises(bentoml.exceptions.BentoMLException) as raised,
    ):
        client.classify(images=bad)
    assert raised.value.error_code == 422 and "no image could be read" in str(raised.value)


def test_bentoml_build_from_the_checkout_works_offline(registry: Registry, built: Built) -> None:
    """`bentoml build` reads [tool.bentoml.build]; the store already holds the model."""
    env = {**registry.env, "PIP_NO_INDEX": "1", "UV_OFFLINE": "1"}  # no index may be needed
    result = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "--output", "tag"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    tag = result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    folder = registry.bentoml_home / "bentos" / name / version
    pinned = (folder / "env" / "python" / "requirements.txt").read_text()
    assert "tensorflow==" in pinned and "bentoml==" in pinned and "mlflow==" in pinned
    assert "prefect" not in pinned and "great-expectations" not in pinned
    assert (folder / "src" / "serving" / "service.py").is_file()
    assert any((folder / "src").rglob("clearsight/inference/predictor.py"))


def _requirement_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_serving_requirements_are_exported_from_the_lock(tmp_path: Path) -> None:
    """serving/requirements.txt is what `make serving-requirements` writes from uv.lock now."""
    uv = shutil.which("uv")
    command = [uv] if uv else ["python3", "-m", "uv"]
    exported = tmp_path / "requirements.txt"
    result = subprocess.run(
        [
            *command,
            "export",
            "--frozen",
            "--only-group",
            "serving",
            "--no-hashes",
            "--no-emit-project",
            "--quiet",
            "--output-file",
            str(exported),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert _requirement_lines(REQUIREMENTS.read_text()) == _requirement_lines(
        exported.read_text()
    ), "serving/requirements.txt is stale: run `make serving-requirements`"
