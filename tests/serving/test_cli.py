"""``clearsight build-service`` and ``clearsight predict`` as a user runs them."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from .conftest import Built, Registry, Server, run_cli

pytestmark = pytest.mark.slow


def test_build_service_pins_the_champion(built: Built, registry: Registry) -> None:
    assert built.model_tag == f"clearsight-cnn:v{registry.version}-{registry.run_id}"
    name, version = built.bento_tag.split(":")
    bento_yaml = yaml.safe_load(
        (registry.bentoml_home / "bentos" / name / version / "bento.yaml").read_text()
    )
    assert bento_yaml["args"] == {"model": built.model_tag}
    assert [m["tag"] for m in bento_yaml["services"][0]["models"]] == [built.model_tag]
    assert bento_yaml["labels"]["run_id"] == registry.run_id
    assert {"name": "BENTOML_DO_NOT_TRACK", "value": "true", "stage": "all"} in bento_yaml["envs"]
    model_file = f"models/clearsight-cnn/v{registry.version}-{registry.run_id}/model.keras"
    names = archive_names(built.archive)
    assert model_file in names and "src/serving/service.py" in names
    assert "src/clearsight/inference/predictor.py" in names  # importable from src/


def archive_names(path: Path) -> set[str]:
    data = path.read_bytes()
    if zipfile.is_zipfile(io.BytesIO(data)):
        return set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {n.removeprefix("./") for n in tar.getnames()}


def test_predict_prints_and_saves_overlays(
    server: Server, registry: Registry, digits, tmp_path: Path
) -> None:
    images, labels = digits
    paths = []
    for i in (0, 100):
        big = Image.fromarray(images[i]).resize((112, 112))  # not 28x28: normalised like MNIST
        paths.append(tmp_path / f"digit{i}.png")
        big.save(paths[-1])
    out = tmp_path / "overlays"
    result = run_cli(
        "predict",
        *map(str, paths),
        "--explain",
        "--url",
        server.url,
        "--out",
        str(out),
        env=registry.env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "digit0.png" in result.stdout and "integrated_gradients" in result.stdout
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == 4 and all(n.endswith(".png") for n in written)
    with Image.open(out / written[0]) as overlay:
        assert overlay.size == (224, 224)
    assert np.any(
        [f"{labels[0]}" in line for line in result.stdout.splitlines() if "digit0" in line]
    )


def test_predict_failures_are_one_line(registry: Registry, tmp_path: Path) -> None:
    missing = run_cli("predict", str(tmp_path / "nope.png"), env=registry.env)
    assert missing.returncode == 1 and missing.stderr.strip().count("\n") == 0
    assert "nope.png' does not exist" in missing.stderr
    image = tmp_path / "x.png"
    Image.new("L", (28, 28)).save(image)
    unreachable = run_cli("predict", str(image), "--url", "http://127.0.0.1:9", env=registry.env)
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
    assert unreachable.stderr.strip().count("\n") == 0
