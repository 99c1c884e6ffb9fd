"""The MLflow UI as a person reads it, in headless Chromium: a run list whose names say what
each run is, and a model version page that says why it was (not) promoted. Screenshots are
kept in test-artifacts/ for a person to look at."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from clearsight.config import PromotionSettings, TrainSettings
from clearsight.data.gate import run_data_gate
from clearsight.pipelines.promote import evaluate_and_promote
from clearsight.pipelines.train import TrainingRun, train_and_assess
from tests.browser import ARTIFACTS, browser_page, needs_chromium
from tests.conftest import stores_under
from tests.serving.conftest import free_port

pytestmark = [
    pytest.mark.slow,
    needs_chromium,
]


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainingRun, str]:
    """One short real training run, registered and promoted (bootstrap) with its decision."""
    settings = stores_under(
        tmp_path_factory.mktemp("mlflow-ui"),
        train=TrainSettings(epochs=2, batch_size=128),
        promotion=PromotionSettings(min_class_recall=0.0, max_completeness_gap=1.0),
        tracking={"log_system_metrics": False, "log_explanations": False},
    )
    gated = run_data_gate(settings)
    run = train_and_assess(settings, gated, verbose=0)
    decision = evaluate_and_promote(settings, gated.splits.holdout, run.version)
    assert decision.promoted
    return run, decision.reason


@pytest.fixture(scope="module")
def mlflow_ui(promoted: tuple[TrainingRun, str]) -> Iterator[str]:
    """``mlflow ui`` on the run's store, on a free loopback port (one worker, no job runner)."""
    run, _ = promoted
    port = free_port()
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", run.tracking_uri]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "mlflow ui did not start"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_run_list_and_version_page_say_what_and_why(mlflow_ui: str, promoted) -> None:
    from playwright.sync_api import expect

    run, reason = promoted
    client_run = httpx.get(
        f"{mlflow_ui}/api/2.0/mlflow/runs/get", params={"run_id": run.run_id}, timeout=10
    ).json()["run"]
    run_name = client_run["info"]["run_name"]
    assert run_name.startswith("tensorflow-embedded-") and "seed42" in run_name
    description = {t["key"]: t["value"] for t in client_run["data"]["tags"]}["mlflow.note.content"]
    assert "holdout accuracy" in description

    with browser_page(1400, 900) as page:
        page.goto(f"{mlflow_ui}/#/experiments/{run.experiment_id}/runs")
        page.keyboard.press("Escape")  # MLflow 3 greets with a popover about traces
        try:
            expect(page.get_by_text(run_name).first).to_be_visible(timeout=60_000)
        finally:
            page.screenshot(path=ARTIFACTS / "mlflow_run_list.png")
        page.goto(f"{mlflow_ui}/#/models/{run.registered_model}/versions/{run.version}")
        page.keyboard.press("Escape")
        try:
            expect(page.get_by_text(reason).first).to_be_visible(timeout=60_000)
        finally:
            page.screenshot(path=ARTIFACTS / "mlflow_model_version.png", full_page=True)
