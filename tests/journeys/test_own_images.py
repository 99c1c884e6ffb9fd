"""Bring your own images (issue #23): data in the shapes users bring, through the whole loop.

Three datasets, each in its own home (data, MLflow store, BentoML store), driven the way a
user drives them: the ``clearsight`` CLI, a real ``clearsight serve`` answering HTTP, and the
library's own client for the files.

- **Word-named digits** (``clearsight data export``: folders ``zero`` .. ``nine``): retrain ->
  promote -> serve -> predict held-out PNG files -> explain -> feedback (scoped token) ->
  monitor -> retrain on the feedback's data version -> the promotion goes live in the running
  service (no restart) -> predict again.
- **Colour shapes**, 32x32 RGB, 3 classes (``colour_shapes``): retrain -> ``clearsight
  explain`` -> serve -> predict held-out PNG files with explanations.
- **Small digits**, 8x8 grey (``clearsight data export --size 8``): retrain -> ``clearsight
  explain`` -> serve -> predict held-out PNG files.

The held-out files are never in the folder the model trains on. The accuracies are printed
(``pytest -s`` shows them) and asserted against floors far below what the runs reach, so a
busy machine does not fail them, while a broken label order or a wrong class mapping (about
chance: 0.10 or 0.33) does.

Run with ``make test-journeys`` (CI runs it after ``make test``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from clearsight.data.class_folders import DIGIT_WORDS, SHAPES, colour_shapes, write_class_folders
from clearsight.inference.client import predict_files
from tests.serving.conftest import (
    FEEDBACK,
    READY_TIMEOUT_S,
    TOKENS,
    free_port,
    stop,
)

pytestmark = [pytest.mark.slow, pytest.mark.journeys]

REPO = Path(__file__).resolve().parents[2]
PER_REQUEST = 50  # images per /predict request (the service takes up to 64)
SWAP_DEADLINE_S = 120


@dataclass
class Home:
    """One dataset's own stores, and the environment every command of it runs with."""

    root: Path
    env: dict[str, str]

    @classmethod
    def under(cls, root: Path, **extra: str) -> Home:
        env = {
            **os.environ,
            "CLEARSIGHT_HOME": str(REPO),
            "CLEARSIGHT_DATA_DIR": str(root / "data"),
            "CLEARSIGHT_MLFLOW_DIR": str(root / "mlflow"),
            "BENTOML_HOME": str(root / "bentoml"),
            "PREFECT_HOME": str(root / "prefect"),
            "CLEARSIGHT_SERVING__POLL_SECONDS": "1",
            "CLEARSIGHT_TRACKING__LOG_SYSTEM_METRICS": "false",
            # Tiny models on a busy CI box: the bar is about the loop, not the model.
            "CLEARSIGHT_PROMOTION__MIN_CLASS_RECALL": "0",
            "CLEARSIGHT_PROMOTION__MAX_COMPLETENESS_GAP": "1",
            "CLEARSIGHT_PROMOTION__MAX_LATENCY_P95_MS": "10000",
            "COLUMNS": "250",
            **TOKENS,
            **extra,
        }
        for name in ("MLFLOW_TRACKING_URI", "CLEARSIGHT_SERVING__FOLLOW_ALIAS"):
            env.pop(name, None)
        return cls(root, env)

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "clearsight", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, (
            f"clearsight {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        )
        return result

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    @contextmanager
    def serving(self) -> Iterator[str]:
        """``clearsight serve`` following ``@champion`` on a free loopback port."""
        port = free_port()
        log = self.root / f"serve-{port}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "clearsight", "serve", "--port", str(port)],
                env=self.env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not _ready(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"service not ready:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
            yield url
        finally:
            stop(process)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def hold_out(tree: Path, target: Path, per_class: int) -> list[Path]:
    """Move the last ``per_class`` files of every class folder of ``tree`` to ``target``."""
    moved = []
    for folder in sorted(p for p in tree.iterdir() if p.is_dir()):
        (target / folder.name).mkdir(parents=True, exist_ok=True)
        for path in sorted(folder.glob("*.png"))[-per_class:]:
            moved.append(Path(shutil.move(path, target / folder.name / path.name)))
    return moved


@dataclass(frozen=True)
class Answers:
    """What the service said about each file: class name, request id, model version."""

    files: list[Path]
    names: list[str]
    request_ids: list[str]
    versions: set[str]
    results: list[dict[str, Any]]

    def accuracy(self) -> float:
        right = [
            name == path.parent.name for name, path in zip(self.names, self.files, strict=True)
        ]
        return sum(right) / len(right)


def predict(url: str, files: list[Path], *, explain: bool = False) -> Answers:
    """The files uploaded to /predict by the library's client (what ``clearsight predict``
    sends), ``PER_REQUEST`` at a time."""
    names: list[str] = []
    ids: list[str] = []
    versions: set[str] = set()
    results: list[dict[str, Any]] = []
    for start in range(0, len(files), PER_REQUEST):
        chunk = files[start : start + PER_REQUEST]
        answer = predict_files(url, chunk, explain=explain, timeout_s=300)
        assert [r["status"] for r in answer["results"]] == ["ok"] * len(chunk), answer
        names += [r["class_name"] for r in answer["results"]]
        ids += [answer["request_id"]] * len(chunk)
        versions.add(answer["model"]["version"])
        results += answer["results"]
    return Answers(files, names, ids, versions, results)


def metadata(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/metadata", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def report(name: str, **numbers: Any) -> None:
    """One line per measurement, for the closing note (``pytest -s``)."""
    print(f"\n[journey {name}] " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


def test_word_named_digits_through_the_whole_loop(tmp_path: Path) -> None:
    home = Home.under(tmp_path, CLEARSIGHT_TRACKING__LOG_EXPLANATIONS="false")
    words = tmp_path / "words"
    home.cli("data", "export", str(words))
    assert sorted(p.name for p in words.iterdir()) == sorted(DIGIT_WORDS)
    feedback_files = hold_out(words, tmp_path / "feedback", per_class=10)
    unseen = hold_out(words, tmp_path / "unseen", per_class=15)

    described = home.cli("data", "describe", "--source", "folder", "--path", str(words)).stdout
    assert "28x28 grey, 10 classes" in described, described

    first = home.cli_json("retrain", "--source", "folder", "--path", str(words), "--epochs", "1")
    assert first["promoted"], first["reason"]
    assert "workflowType=machine_learning" in first["run_link"]

    with home.serving() as url:
        meta = metadata(url)
        assert meta["version"] == first["version"]
        # Keras's convention: the class folders' names, sorted; label i is the i-th name.
        assert meta["task"]["class_names"] == sorted(DIGIT_WORDS)
        assert meta["input"]["model_input_shape"] == [28, 28, 1]

        before = predict(url, unseen)
        report(
            "words",
            model=f"v{first['version']} (1 epoch)",
            unseen=len(unseen),
            accuracy=f"{before.accuracy():.3f}",
        )
        assert before.accuracy() > 0.6

        explained = predict(url, unseen[:3], explain=True)
        for result in explained.results:
            [ig] = [e for e in result["explanations"] if e["method"] == "integrated_gradients"]
            assert ig["target_name"] in DIGIT_WORDS
            assert ig["quality"]["completeness_gap"] < 0.01

        # Feedback: the right labels for files the service answered, with the feedback token.
        served = predict(url, feedback_files)
        names = list(meta["task"]["class_names"])
        for start in range(0, len(feedback_files), PER_REQUEST):
            rows = range(start, min(start + PER_REQUEST, len(feedback_files)))
            body = {
                "images": [
                    {
                        "kind": "base64",
                        "data": base64.b64encode(feedback_files[r].read_bytes()).decode(),
                    }
                    for r in rows
                ],
                "labels": [names.index(feedback_files[r].parent.name) for r in rows],
                "request_ids": [served.request_ids[r] for r in rows],
            }
            refused = httpx.post(f"{url}/feedback", json=body, timeout=60)
            assert refused.status_code == 401, "feedback without a token must be refused"
            answer = httpx.post(f"{url}/feedback", json=body, headers=FEEDBACK, timeout=60)
            assert answer.status_code == 202, answer.text

        monitored = home.cli_json("monitor", "--window", "20")
        assert monitored["window"] >= 20 and monitored["tests"], monitored

        second = home.cli_json(
            "retrain", "--source", "folder", "--path", str(words), "--epochs", "6"
        )
        assert second["promoted"], second["reason"]
        assert second["data_version"].startswith("dv0002"), second["data_version"]

        deadline = time.monotonic() + SWAP_DEADLINE_S
        while metadata(url)["version"] != second["version"]:
            assert time.monotonic() < deadline, "the promotion did not go live"
            time.sleep(0.5)
        after = predict(url, unseen)
        assert after.versions == {second["version"]}
        report(
            "words",
            model=f"v{second['version']} (6 epochs, with feedback)",
            unseen=len(unseen),
            accuracy=f"{after.accuracy():.3f}",
        )
        assert after.accuracy() > 0.9


def explain_file_cli(home: Home, image: Path, out: Path) -> dict[str, Any]:
    """``clearsight explain IMAGE --json`` with the champion: its answer and overlays."""
    answer = home.cli_json("explain", str(image), "--out", str(out))
    assert answer["class_name"] == answer["class_name"].strip() and answer["explanations"]
    for row in answer["explanations"]:
        assert Path(row["overlay"]).is_file()
    return answer


def test_colour_shapes_train_explain_and_serve(tmp_path: Path) -> None:
    home = Home.under(tmp_path)
    shapes = tmp_path / "shapes"
    write_class_folders(colour_shapes(250, size=32, seed=0), shapes)
    unseen_tree = tmp_path / "unseen"
    write_class_folders(colour_shapes(20, size=32, seed=1), unseen_tree)  # other draws
    unseen = sorted(unseen_tree.glob("*/*.png"))

    trained = home.cli_json("retrain", "--source", "folder", "--path", str(shapes))
    assert trained["promoted"], trained["reason"]

    answer = explain_file_cli(home, unseen[0], tmp_path / "overlays")
    assert answer["class_name"] in SHAPES
    [ig] = [r for r in answer["explanations"] if r["method"] == "integrated_gradients"]
    assert ig["completeness_gap"] < 0.01

    with home.serving() as url:
        meta = metadata(url)
        assert meta["task"]["class_names"] == sorted(SHAPES)
        assert meta["task"]["channels"] == 3
        assert meta["input"]["model_input_shape"] == [32, 32, 3]
        oip = httpx.get(f"{url}/v2/models/{meta['name']}", timeout=30).json()
        assert oip["inputs"][0]["shape"] == [-1, 32, 32, 3]
        answers = predict(url, unseen)
        report(
            "colour shapes 32x32",
            model=f"v{trained['version']}",
            unseen=len(unseen),
            accuracy=f"{answers.accuracy():.3f}",
        )
        assert answers.accuracy() > 0.6  # chance: 0.33
        explained = predict(url, unseen[:2], explain=True)
        for result in explained.results:
            assert {e["method"] for e in result["explanations"]} >= {"integrated_gradients"}
            for e in result["explanations"]:
                overlay = base64.b64decode(e["png_overlay"])
                assert overlay.startswith(b"\x89PNG")


def test_small_digits_train_explain_and_serve(tmp_path: Path) -> None:
    home = Home.under(tmp_path, CLEARSIGHT_TRACKING__LOG_EXPLANATIONS="false")
    small = tmp_path / "small"
    home.cli("data", "export", "--digits", "--size", "8", str(small))
    unseen = hold_out(small, tmp_path / "unseen", per_class=15)

    trained = home.cli_json("retrain", "--source", "folder", "--path", str(small), "--epochs", "8")
    assert trained["promoted"], trained["reason"]
    answer = explain_file_cli(home, unseen[0], tmp_path / "overlays")
    assert answer["class_name"] in [str(d) for d in range(10)]

    with home.serving() as url:
        meta = metadata(url)
        assert meta["input"]["model_input_shape"] == [8, 8, 1]
        assert meta["task"]["class_names"] == [str(d) for d in range(10)]  # numeric order
        answers = predict(url, unseen)
        report(
            "digits 8x8",
            model=f"v{trained['version']}",
            unseen=len(unseen),
            accuracy=f"{answers.accuracy():.3f}",
        )
        assert answers.accuracy() > 0.6  # chance: 0.10
