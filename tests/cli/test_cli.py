"""The ``clearsight`` command as a user runs it: a real process, real exit codes."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import write_idx_pair

CLEARSIGHT = str(Path(sys.executable).parent / "clearsight")


def run_cli(
    *args: str, tmp_path: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = (
        os.environ
        | (env or {})
        | {
            "CLEARSIGHT_DATA_DIR": str(tmp_path / "data"),
            "CLEARSIGHT_MLFLOW_DIR": str(tmp_path / "mlflow"),
            "COLUMNS": "200",
        }
    )
    return subprocess.run([CLEARSIGHT, *args], env=env, capture_output=True, text=True, timeout=300)


def test_help_is_fast(tmp_path: Path) -> None:
    run_cli("--help", tmp_path=tmp_path)  # first call may compile bytecode
    start = time.perf_counter()
    result = run_cli("--help", tmp_path=tmp_path)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0 and "data" in result.stdout
    assert elapsed < 1.0, f"clearsight --help took {elapsed:.2f} s"


def test_validate_corrupted_idx_lists_failures_and_exits_nonzero(tmp_path: Path, digits) -> None:
    images, labels = digits
    bad = images.astype(np.float32)
    bad[::25, 3, 3] = 400.0
    labels = labels.copy()
    labels[::31] = 12
    folder = write_idx_pair(tmp_path / "idx", bad, labels, gz=True)
    result = run_cli(
        "data", "validate", "--source", "idx", "--path", str(folder), tmp_path=tmp_path
    )
    assert result.returncode == 1
    assert "FAIL" in result.stdout
    assert "label" in result.stdout and "max" in result.stdout
    assert "error: data contract failed" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "data" / "holdout").exists()


def test_truncated_file_is_one_line_error(tmp_path: Path, digits) -> None:
    folder = write_idx_pair(tmp_path / "idx", *digits)
    target = folder / "train-images-idx3-ubyte"
    target.write_bytes(target.read_bytes()[:1000])
    result = run_cli("data", "validate", "-s", "idx", "-p", str(folder), tmp_path=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "train-images-idx3-ubyte: truncated" in lines[0]


def test_validate_embedded_passes_and_prints_report_paths(tmp_path: Path) -> None:
    candidate = run_cli("data", "validate", "--no-freeze", "--json", tmp_path=tmp_path)
    assert candidate.returncode == 0 and json.loads(candidate.stdout)["success"] is True
    assert not (tmp_path / "data" / "holdout").exists()  # a candidate check writes no holdout
    result = run_cli("data", "validate", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "data contract passed" in result.stdout
    assert "data docs:" in result.stdout and "index.html" in result.stdout
    describe = run_cli("data", "describe", tmp_path=tmp_path)
    assert describe.returncode == 0
    assert "holdout: frozen (reused)" in describe.stdout


EXPECTED_FAILURES = [
    (("models",), "registered model 'clearsight-cnn' does not exist yet"),
    (("rollback",), "registered model 'clearsight-cnn' does not exist yet"),
    (("promote",), "no frozen holdout"),
    (("train", "--backend", "torch"), "the torch backend needs the 'torch' package"),
    (("data", "validate", "-s", "npz"), "source 'npz' needs a path"),
    (("data", "describe", "-s", "npz", "-p", "missing.npz"), "missing.npz: no such file"),
    (("data", "describe", "--source", "nope"), "'nope' is not one of 'embedded', 'idx'"),
    (("predict", "missing.png"), "'missing.png' does not exist"),
    (("explain", "{digit}", "-m", "lime"), "'lime' is not one of 'integrated_gradients'"),
    (("retrain", "--path", "missing"), "'missing' does not exist"),
    (("train", "--epochs", "0"), "--epochs': Input should be greater than or equal to 1"),
    (("frobnicate",), "No such command 'frobnicate'"),
]


@pytest.mark.parametrize(
    ("args", "message"), EXPECTED_FAILURES, ids=[" ".join(a) for a, _ in EXPECTED_FAILURES]
)
def test_expected_failures_are_one_line_and_exit_1(
    tmp_path: Path, digits, args: tuple[str, ...], message: str
) -> None:
    digit = tmp_path / "digit.png"
    Image.fromarray(digits[0][0]).save(digit)
    result = run_cli(*(a.format(digit=digit) for a in args), tmp_path=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0], errors
    assert "Traceback" not in result.stdout + result.stderr


def test_invalid_setting_from_the_environment_is_one_line(tmp_path: Path) -> None:
    result = run_cli("config", tmp_path=tmp_path, env={"CLEARSIGHT_TRAIN__EPOCHS": "zero"})
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: invalid setting train.epochs")


def test_version_config_and_json(tmp_path: Path) -> None:
    assert run_cli("--version", tmp_path=tmp_path).stdout.startswith("clearsight 0.")
    settings = json.loads(
        run_cli("config", "--json", tmp_path=tmp_path, env={"CLEARSIGHT_DATA__SEED": "7"}).stdout
    )
    assert settings["data.seed"] == {"value": 7, "from": "env CLEARSIGHT_DATA__SEED"}
    assert settings["train.epochs"]["from"] == "default"
    described = json.loads(run_cli("data", "describe", "--json", tmp_path=tmp_path).stdout)
    assert described["images"] == 5000 and set(described["splits"]) == {
        "train",
        "validation",
        "holdout",
    }
    assert (
        sum(described["splits"]["holdout"]["per_class"]) == described["splits"]["holdout"]["images"]
    )


@pytest.mark.slow
def test_diverged_training_is_one_line_and_registers_nothing(tmp_path: Path) -> None:
    result = run_cli("train", "--epochs", "2", "--learning-rate", "1e30", tmp_path=tmp_path)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "training diverged (NaN loss)" in last
    assert "Traceback" not in result.stdout + result.stderr
    models = run_cli("models", tmp_path=tmp_path)
    assert "does not exist yet" in models.stderr


def test_explain_without_a_model_prints_no_framework_noise(tmp_path: Path, digits) -> None:
    """TensorFlow is imported before the registry answers: its start-up lines stay hidden."""
    digit = tmp_path / "digit.png"
    Image.fromarray(digits[0][0]).save(digit)
    result = run_cli("explain", str(digit), tmp_path=tmp_path, env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: registered model 'clearsight-cnn' does not exist yet; train one first"
    ], result.stderr
    assert not (tmp_path / "mlflow").exists()  # asking created no empty store
