"""The Prefect flows for real, on Prefect's test harness (one temporary server per module).

The ``slow`` tests run a real Prefect server and real training (minutes, still run in CI);
the rest check the flows' policies (retry condition, prefect.yaml mapping) in milliseconds.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect.states import Failed
from prefect.testing.utilities import prefect_test_harness

from clearsight.config import Settings
from clearsight.data.incoming import read_ledger
from clearsight.errors import DataSourceError, DataValidationError, TrainingError

slow = pytest.mark.slow  # real Prefect server, real training
MODEL = "clearsight-cnn"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, digits):
    """Stores under tmp, a lenient class-recall floor (tiny models), a harness server."""
    root = tmp_path_factory.mktemp("flows")
    images, labels = digits
    good = root / "digits.npz"
    np.savez(good, x_train=images, y_train=labels)
    bad_labels = labels.copy()
    bad_labels[::20] = 42
    bad = root / "bad.npz"
    np.savez(bad, x_train=images, y_train=bad_labels)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLEARSIGHT_DATA_DIR", str(root / "data"))
        mp.setenv("CLEARSIGHT_MLFLOW_DIR", str(root / "mlflow"))
        mp.setenv("BENTOML_HOME", str(root / "bentoml"))  # bentos built after promotions
        mp.setenv("CLEARSIGHT_PROMOTION__MIN_CLASS_RECALL", "0")
        mp.setenv("CLEARSIGHT_PROMOTION__MAX_COMPLETENESS_GAP", "1")
        mp.setenv("CLEARSIGHT_TRACKING__LOG_SYSTEM_METRICS", "false")
        mp.setenv("CLEARSIGHT_TRAIN__BATCH_SIZE", "32")
        with prefect_test_harness(server_startup_timeout=180):
            yield {
                "root": root,
                "good": good,
                "bad": bad,
                "client": MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"),
            }


def _validation_reports(env) -> list[Path]:
    folder = env["root"] / "data" / "reports" / "validation"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _versions(client: MlflowClient) -> list[str]:
    try:
        found = client.search_model_versions("name='clearsight-cnn'")
        return sorted(str(v.version) for v in found)
    except Exception:
        return []


@slow
def test_retrain_bootstraps_then_decides(env) -> None:
    from flows.retrain import retrain

    first = retrain(source="npz", path=str(env["good"]), epochs=2)
    assert first.promoted and first.champion == first.version == "1"
    assert "First model" in first.reason
    assert Path(first.validation_report).is_file()
    second = retrain(source="npz", path=str(env["good"]), epochs=1, seed=7)
    assert second.version == "2"
    client = env["client"]
    champion = str(client.get_model_version_by_alias("clearsight-cnn", "champion").version)
    assert champion == ("2" if second.promoted else "1")
    assert second.champion == champion
    assert str(client.get_model_version_by_alias("clearsight-cnn", "challenger").version) == "2"


@slow
def test_corrupted_data_fails_the_flow_before_training(env) -> None:
    from flows.retrain import retrain

    client = env["client"]
    versions_before = _versions(client)
    runs_before = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
    reports_before = _validation_reports(env)
    state = retrain(source="npz", path=str(env["bad"]), epochs=1, return_state=True)
    assert state.is_failed()
    assert "data contract failed" in state.message or "label" in str(state.message)
    assert _versions(client) == versions_before
    runs_after = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
    assert runs_after == runs_before
    # A broken contract is not retried: one validation, one report (not three).
    assert len(_validation_reports(env)) == len(reports_before) + 1


def _fresh_batch(path: Path, rows: slice) -> Path:
    """Real digits that are not in ``good`` (the embedded set past its first 40 per class)."""
    from clearsight.data.sources import load_embedded

    full = load_embedded()
    index = np.concatenate([np.flatnonzero(full.labels == c)[rows] for c in range(10)])
    np.savez(path, x_train=full.images[index], y_train=full.labels[index])
    return path


def _watch_good(monkeypatch: pytest.MonkeyPatch, env) -> Path:
    """The watcher's configured source is ``good`` (batches extend it); 1-epoch retrains."""
    monkeypatch.setenv("CLEARSIGHT_DATA__SOURCE", "npz")
    monkeypatch.setenv("CLEARSIGHT_DATA__PATH", str(env["good"]))
    monkeypatch.setenv("CLEARSIGHT_TRAIN__EPOCHS", "1")
    monkeypatch.setenv("CLEARSIGHT_TRACKING__LOG_EXPLANATIONS", "false")
    incoming = env["root"] / "data" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    return incoming


@slow
def test_incoming_batches_make_versions_and_one_retrain(
    env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.incoming import watch_incoming

    incoming = _watch_good(monkeypatch, env)
    _fresh_batch(incoming / "batch-1.npz", slice(40, 43))
    _fresh_batch(incoming / "batch-1b.npz", slice(43, 44))
    (incoming / "notes.txt").write_text("ignored: not a data set")
    before = len(_versions(env["client"]))
    outcomes = watch_incoming()
    assert [o["batch"] for o in outcomes] == ["batch-1.npz", "batch-1b.npz"]
    assert all("accepted as dv" in o["outcome"] for o in outcomes)
    assert len(_versions(env["client"])) == before + 1, "two new versions, one retrain"
    assert outcomes[0]["retrain"] == outcomes[1]["retrain"]
    newest = outcomes[1]["outcome"].split("accepted as ")[1].split()[0]
    assert newest in outcomes[1]["retrain"]
    run = env["client"].get_run(
        env["client"].get_model_version(MODEL, _versions(env["client"])[-1]).run_id
    )
    assert run.data.tags["data_version"] == newest
    entry = read_ledger(incoming)["batch-1.npz"]
    assert entry["source"] == "npz" and entry["outcome"].startswith("accepted: dv")
    assert watch_incoming() == []  # seen: nothing new


def _launcher_env(tmp_path: Path, port: int) -> dict[str, str]:
    """The launcher's own server: a fresh PREFECT_HOME, a free port, nothing phones home."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CLEARSIGHT_"))}
    return env | {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "CLEARSIGHT_DATA_DIR": str(tmp_path / "data"),  # a watcher poll that starts meanwhile
        "CLEARSIGHT_MLFLOW_DIR": str(tmp_path / "mlflow"),
    }


@slow
def test_make_schedule_deploys_prefect_yaml_with_schedules_and_the_registry_limit(
    tmp_path: Path,
) -> None:
    """`python -m flows.schedule` (what `make schedule` and the compose worker run): a loopback
    server, `prefect deploy --all`, a worker on the pool; SIGTERM stops all of it."""
    import os
    import signal
    import subprocess
    import sys

    import httpx

    from tests.conftest import REPO
    from tests.serving.conftest import free_port

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    log = tmp_path / "schedule.log"
    with log.open("w") as out:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "flows.schedule"],
            cwd=REPO,
            env=_launcher_env(tmp_path, port),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while "Worker 'ProcessWorker" not in log.read_text():
            assert launcher.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        found = httpx.post(f"{api}/deployments/filter", json={}).json()
        deployments = {d["name"]: d for d in found}
        assert set(deployments) == {"nightly", "incoming", "hourly"}
        assert {d["work_pool_name"] for d in found} == {"clearsight"}
        nightly = deployments["nightly"]
        [schedule] = [s["schedule"] for s in nightly["schedules"]]
        assert schedule["cron"] == "0 3 * * *" and schedule["timezone"] == "UTC"
        assert nightly["parameters"] == {"source": "embedded", "only_if_new_data": True}
        incoming = deployments["incoming"]
        assert [s["schedule"]["interval"] for s in incoming["schedules"]] == [60.0]
        assert incoming["global_concurrency_limit"]["limit"] == 1
        assert incoming["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
        assert incoming["parameters"] == {"claim_timeout_minutes": 300}
        hourly = deployments["hourly"]
        assert [s["schedule"]["interval"] for s in hourly["schedules"]] == [3600.0]
        assert hourly["parameters"] == {"retrain_on_drift": True}
        registry = httpx.get(f"{api}/v2/concurrency_limits/clearsight-registry").json()
        assert (registry["limit"], registry["active"]) == (1, True)
        workers = httpx.post(f"{api}/work_pools/clearsight/workers/filter", json={}).json()
        assert [w["status"] for w in workers] == ["ONLINE"]
    finally:
        os.killpg(launcher.pid, signal.SIGTERM)
        time.sleep(0.2)
        with suppress(ProcessLookupError):  # a second signal (uv forwards one) changes nothing
            os.killpg(launcher.pid, signal.SIGTERM)
        assert launcher.wait(timeout=90) == 0, log.read_text()[-3000:]
    with pytest.raises(httpx.TransportError):  # the server went with it
        httpx.get(f"{api}/health", timeout=2)


def test_schedule_checks_pass_the_repositorys_prefect_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.deployments import check_file

    monkeypatch.setenv("CLEARSIGHT_HOME", "/srv/clearsight")
    assert check_file() == "clearsight"


FULL_SPEC = """
name: test
prefect-version: 3.9.1
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{{ $CLEARSIGHT_HOME }}"
deployments:
  - name: every-key
    entrypoint: flows/retrain.py:retrain
    flow_name: retrain
    description: "{{ prefect.variables.text }}"
    version: 7
    version_type: prefect:simple
    tags: [nightly, clearsight]
    parameters: {source: embedded, epochs: 1}
    enforce_parameter_schema: false
    paused: true
    concurrency_limit: {limit: 2, collision_strategy: CANCEL_NEW, grace_period_seconds: 120}
    schedules:
      - cron: "0 3 * * 1-5"
        timezone: Europe/Berlin
        day_or: false
        active: false
        slug: weekdays
        replaces: old
        parameters: {seed: 3}
      - interval: PT2H
        anchor_date: "2026-01-01T00:30:00+00:00"
        timezone: UTC
      - rrule: "FREQ=WEEKLY;BYDAY=SA"
        timezone: America/New_York
    triggers:
      - enabled: true
        match: {prefect.resource.id: clearsight.incoming}
        expect: [clearsight.batch.arrived]
    pull: [{prefect.deployments.steps.git_clone: {repository: x}}]
    work_pool:
      name: clearsight
      work_queue_name: default
      job_variables: {env: {A: b}}
"""


def test_schedule_checks_pass_every_key_prefect_deploy_honours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.deployments import check_file

    monkeypatch.setenv("CLEARSIGHT_HOME", str(tmp_path))
    spec = tmp_path / "prefect.yaml"
    spec.write_text(FULL_SPEC)
    assert check_file(spec) == "clearsight"


ONE = "deployments:\n  - name: x\n    entrypoint: flows/incoming.py:watch_incoming\n"
POOL = "    work_pool: {name: clearsight}\n"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (ONE + POOL + "    concurency_limit: 1\n", "concurency_limit"),  # Prefect drops it
        (ONE + POOL + "    concurrency_limit: {limit: 1, collision: CANCEL_NEW}\n", "collision"),
        (ONE + POOL + "    sla: [{name: x, duration: 10}]\n", "sla"),
        (ONE + POOL + "    schedules: [{cron: '0 3 * * *', interval: 60}]\n", "exactly one"),
        (ONE + POOL + "    schedules: [{every: 60}]\n", "every"),
        (ONE + POOL + "    description: '{{ $CLEARSIGHT_UNSET }}'\n", "CLEARSIGHT_UNSET"),
        (ONE + "    work_pool: {name: clearsight, job_variable: {}}\n", "job_variable"),
        (ONE, "work_pool"),  # scheduled, never run
        (ONE + POOL + ONE.split("\n", 1)[1] + "    work_pool: {name: other}\n", "other"),
        ("deployment: []\n", "deployment"),
    ],
)
def test_schedule_refuses_what_prefect_deploy_would_get_wrong(
    tmp_path: Path, text: str, named: str
) -> None:
    import subprocess
    import sys

    from flows.deployments import DeploymentSpecError, check_file
    from tests.conftest import REPO

    spec = tmp_path / "prefect.yaml"
    spec.write_text(text)
    with pytest.raises(DeploymentSpecError, match=named):
        check_file(spec)
    if named == "sla":  # the command itself: one line, non-zero, before any server starts
        done = subprocess.run(
            [sys.executable, "-m", "flows.schedule", "--prefect-file", str(spec)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode != 0
        assert done.stderr.strip().splitlines() == [
            "error: prefect.yaml: deployment 'x': 'sla' works on Prefect Cloud only"
        ]
        assert "Prefect server ready" not in done.stdout


def _settings(env, **train) -> Settings:
    return (
        Settings()
        .override("data", source="npz", path=str(env["good"]))
        .override("train", **({"epochs": 1} | train))
    )


@slow
def test_validate_data_retries_io_faults_only(env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken contract fails at once; a transient OSError gets another attempt."""
    import clearsight.data.gate as gate
    from flows.retrain import validate_data

    real = gate.run_data_gate
    calls: list[str] = []

    def flaky(settings: Settings, **kwargs):
        calls.append("call")
        if len(calls) == 1:
            raise ConnectionResetError("store went away")
        return real(settings, **kwargs)

    quick = validate_data.with_options(retry_delay_seconds=0)
    monkeypatch.setattr(gate, "run_data_gate", flaky)
    assert quick(_settings(env)).report.success
    assert len(calls) == 2

    def broken(settings: Settings, **kwargs):
        calls.append("call")
        raise DataSourceError("digits.npz: unreadable")

    calls.clear()
    monkeypatch.setattr(gate, "run_data_gate", broken)
    with pytest.raises(DataSourceError):
        quick(_settings(env))
    assert len(calls) == 1


@slow
def test_retried_training_leaves_one_complete_run_and_one_version(
    env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registration's reply is lost once: the first attempt's version is removed again,
    its run ends FAILED, and the retry registers exactly one version of a complete run."""
    from clearsight.data.gate import run_data_gate
    from flows.retrain import train_model

    client = env["client"]
    settings = _settings(env).override("tracking", log_explanations=False)
    gated = run_data_gate(settings)
    before = set(_versions(client))
    runs_before = {r.info.run_id for r in _runs(client)}
    real = mlflow.register_model
    attempts: list[str] = []

    def reply_lost(model_uri: str, name: str, *args, **kwargs):
        version = real(model_uri, name, *args, **kwargs)
        attempts.append(str(version.version))
        if len(attempts) == 1:
            raise ConnectionError("registry reply lost")
        return version

    monkeypatch.setattr(mlflow, "register_model", reply_lost)
    run = train_model.with_options(retry_delay_seconds=0)(settings, gated)
    assert len(attempts) == 2
    assert set(_versions(client)) - before == {run.version}
    assert client.get_model_version(MODEL, run.version).run_id == run.run_id
    new_runs = {r.info.run_id: r.info.status for r in _runs(client)}
    new_runs = {k: v for k, v in new_runs.items() if k not in runs_before}
    assert new_runs[run.run_id] == "FINISHED"
    assert sorted(new_runs.values()) == ["FAILED", "FINISHED"]
    assert "model_card.md" in {a.path for a in client.list_artifacts(run.run_id)}


def _runs(client: MlflowClient) -> list:
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


@slow
def test_registry_slot_creates_its_limit_and_serialises(env) -> None:
    """No limit yet (Prefect would skip it silently): the slot creates it and then admits
    one holder at a time."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from flows.registry_lock import REGISTRY_LIMIT, registry_slot

    with get_client(sync_client=True) as client, suppress(ObjectNotFound):
        client.delete_global_concurrency_limit_by_name(REGISTRY_LIMIT)
    held: list[tuple[float, float]] = []
    start = threading.Barrier(2)

    def hold() -> None:
        start.wait(timeout=60)
        with registry_slot(timeout_seconds=60):
            entered = time.monotonic()
            time.sleep(1.0)
            held.append((entered, time.monotonic()))

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(hold), pool.submit(hold)]:
            future.result(timeout=120)
    first, second = sorted(held)
    assert second[0] >= first[1], f"critical sections overlapped: {held}"
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(REGISTRY_LIMIT)
    assert limit.limit == 1 and limit.active and limit.active_slots == 0


@contextmanager
def _recorded_slot(real, barrier: threading.Barrier, held: list[tuple[float, float]]):
    """The real registry slot, entered by both retrains at the same moment; records when
    each one held it."""
    barrier.wait(timeout=300)  # both retrains trained and now want the slot
    with real():
        entered = time.monotonic()
        try:
            yield
        finally:
            held.append((entered, time.monotonic()))


def _check_aliases(client: MlflowClient, new: set[str]) -> list[str]:
    history = [v for v in client.get_registered_model(MODEL).tags["champion_history"].split(",")]
    existing = set(_versions(client))
    assert set(history) <= existing, f"history names missing versions: {history}"
    assert all(a != b for a, b in pairwise(history)), history
    aliases: dict[str, str | None] = {}
    for alias in ("champion", "previous-champion", "challenger"):
        try:
            aliases[alias] = str(client.get_model_version_by_alias(MODEL, alias).version)
        except MlflowException:  # no such alias (no previous champion after one promotion)
            aliases[alias] = None
    assert aliases["champion"] == history[-1]
    assert aliases["previous-champion"] == (history[-2] if len(history) > 1 else None)
    assert aliases["challenger"] in new
    return history


@slow
def test_two_retrains_at_once_keep_the_aliases_consistent(
    env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(c) Two retrains started together: their registry sections run one after the other,
    and the aliases and the champion history end consistent."""
    import flows.retrain as retrain_module

    monkeypatch.setenv("CLEARSIGHT_TRACKING__LOG_EXPLANATIONS", "false")  # SHAP: one thread
    client = env["client"]
    history_before = client.get_registered_model(MODEL).tags["champion_history"].split(",")
    before = set(_versions(client))
    held: list[tuple[float, float]] = []
    barrier = threading.Barrier(2)
    real = retrain_module.registry_slot
    monkeypatch.setattr(
        retrain_module, "registry_slot", lambda: _recorded_slot(real, barrier, held)
    )
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(
                retrain_module.retrain, source="npz", path=str(env["good"]), epochs=1, seed=s
            )
            for s in (11, 12)
        ]
        summaries = [f.result(timeout=600) for f in futures]
    new = set(_versions(client)) - before
    assert new == {s.version for s in summaries} and len(new) == 2
    first, second = sorted(held)
    assert second[0] >= first[1], f"registry sections overlapped: {held}"
    history = _check_aliases(client, new)
    promoted = [s.version for s in sorted(summaries, key=lambda s: int(s.version)) if s.promoted]
    assert history[: len(history_before)] == history_before
    assert sorted(history[len(history_before) :]) == sorted(promoted)


@slow
def test_two_watchers_on_one_batch_train_it_once(env, monkeypatch: pytest.MonkeyPatch) -> None:
    """(d) The incoming watcher started twice at once on one new batch trains it once."""
    import clearsight.data.ingest as ingest_module
    import flows.incoming as incoming_module

    incoming = _watch_good(monkeypatch, env)
    _fresh_batch(incoming / "batch-2.npz", slice(44, 47))
    before = set(_versions(env["client"]))
    barrier = threading.Barrier(2)
    claims: list[bool] = []
    real_claim = ingest_module.claim

    def claim_together(*args, **kwargs) -> bool:
        barrier.wait(timeout=300)  # both watchers listed the batch; now both claim it
        won = real_claim(*args, **kwargs)
        claims.append(won)
        return won

    monkeypatch.setattr(ingest_module, "claim", claim_together)
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(incoming_module.watch_incoming) for _ in range(2)]
        results = [f.result(timeout=600) for f in futures]
    assert sorted(claims) == [False, True]
    assert sorted(len(r) for r in results) == [0, 1]
    assert len(set(_versions(env["client"])) - before) == 1
    entry = read_ledger(incoming)["batch-2.npz"]
    assert entry["status"] == "done" and entry["outcome"].startswith("accepted: dv")
    [[outcome]] = [r for r in results if r]
    assert outcome["retrain"].startswith(("promoted (v", "kept champion (v"))


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (OSError("disk hiccup"), True),
        (ConnectionError("tracking server unreachable"), True),
        (TimeoutError("socket timed out"), True),
        (DataValidationError(SimpleNamespace(failures=[], outcomes=[])), False),
        (DataSourceError("batch.npz: unreadable"), False),
        (TrainingError("loss diverged"), False),
        (ValueError("a bug"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_retry_condition_retries_io_faults_only(error: BaseException, retried: bool) -> None:
    from flows.retrain import retry_on_io_fault

    assert retry_on_io_fault(None, None, Failed(data=error)) is retried


def test_retry_condition_follows_the_cause_but_never_a_clearsight_error() -> None:
    from prefect.task_engine import TaskRunTimeoutError

    from flows.retrain import is_io_fault

    try:
        try:
            raise ConnectionRefusedError("mlflow down")
        except OSError as err:
            raise RuntimeError("API request failed") from err
    except RuntimeError as wrapped:
        assert is_io_fault(wrapped)
    try:
        try:
            raise OSError("no such file")
        except OSError as err:
            raise DataSourceError("batch.npz: no such file") from err
    except DataSourceError as wrapped:
        assert not is_io_fault(wrapped)
    assert not is_io_fault(TaskRunTimeoutError("took too long"))
