"""Requests/s and latency of the clearsight service beside the servers users would pick instead.

In one run, on the same champion model (trained here, seeded, logged to a temporary MLflow
registry and given the ``champion`` alias) and the same held-out digits:

- clearsight: ``bentoml serve serving.service:Clearsight`` (the project's environment);
- mlflow: ``mlflow models serve -m models:/clearsight-cnn@champion --env-manager local``;
- mlserver: MLServer 1.7.1 with ``mlserver-mlflow`` on the registered model's files
  (``model-settings.json``, adaptive batching on, as MLServer's docs recommend for throughput,
  its window sized to the pyfunc call measured here);
- mlserver-alibi: MLServer 1.6.1 with ``mlserver-alibi-explain`` (alibi's
  ``IntegratedGradients``, its defaults) on the same model file;
- kserve: the KServe 0.21 Python model server (``ModelServer().start([model])``), predict and
  ``:explain`` from a custom explainer running alibi 0.9.6's ``IntegratedGradients`` (its
  defaults) on the same model, as KServe's docs show custom explainers;
- bentoml: a well-written BentoML service (``@bentoml.api(batchable=True)``, the model called
  directly, no explanation), with the process-level switches clearsight's service has.

Every peer runs in its own uv environment (``benchmarks/peer_envs.py``, ``benchmarks/.envs``),
created on first use, with the project's TensorFlow and Keras versions. Each server gets one
worker (one core is all it has). Servers are pinned to one core and the load generator to the
other (``os.sched_setaffinity``); with a single core they share it, and the output says so.
Servers run one at a time (started, checked, measured, stopped), so an idle peer never shares
the core with the server being measured.

Per server and workload: closed loop at concurrency 1, 8 and 32 for ``--seconds`` each (after
a warm-up), then open loop (Poisson arrivals, latency counted from the scheduled send time so a
slow server cannot slow its own clock; the first ``--warm-up`` seconds of arrivals are not
counted) at 50 % and 80 % of the best closed-loop requests/s, and for predict at each
``--rates`` requests/s (the same absolute rates for every server: the machine's speed moves
every capacity, and with it what "50 %" asks).

``bentoml-floor`` is not a peer: BentoML with clearsight's switches answering the /predict
body with a constant (``peers/bentoml_floor.py``). Its tail at 50 % of its own capacity is
what the framework alone reaches on this core, the yardstick for clearsight's tail target.

    uv run --no-sync python benchmarks/serve.py [--seconds 10] [--only clearsight,kserve]
        [--rates 130] [--json benchmarks/results/serve.json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

import clearsight  # telemetry off, inherited by the servers
from benchmarks import peer_envs, profiling
from benchmarks.machine import cpu_name
from serving.garbage import YOUNG_THRESHOLD

REPO = Path(__file__).resolve().parents[1]

CLOSED_LOOP = (1, 8, 32)
OPEN_LOOP = (0.5, 0.8)  # fractions of each server's best closed-loop requests/s
TARGET_PREDICT_RATIO = 1.5  # clearsight / best peer, predict requests/s at concurrency 32
TARGET_P99_MS = 25.0  # clearsight predict p99 at 50 % of its capacity
TARGET_EXPLAIN_RATIO = 3.0  # clearsight predict + explanation / best peer explainer, c=32
PREDICT, EXPLAINED = "predict", "predict + explanation"
FLOOR = "bentoml-floor"  # the framework alone (peers/bentoml_floor.py), not a peer
NOT_PEERS = ("clearsight", FLOOR)
# The same predictions through the Open Inference Protocol: JSON tensors, and Triton's binary
# tensor extension (a small JSON header, then the raw float32 bytes): what moves the tail?
PREDICT_OIP_JSON, PREDICT_OIP_BINARY = "predict (OIP JSON)", "predict (OIP binary)"
GAP_IMAGES = 16  # images whose completeness gap each explaining server is checked on
REGISTERED = "clearsight-cnn"


@dataclass
class Row:
    server: str
    workload: str
    mode: str  # "closed" or "open"
    load: str  # "c=8" or "rate=123/s"
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    completeness_gap: float | None = None  # median over GAP_IMAGES, explanation workloads only


Body = dict | tuple[bytes, dict[str, str]]  # a JSON body, or raw bytes and their headers


@dataclass
class Server:
    """One server under test: how to start it, when it is ready, where each workload goes."""

    name: str
    build: Callable[[int], list[str]]  # port -> command line
    ready: str  # a GET path answering 200 once the model is loaded
    endpoints: dict[str, tuple[str, Callable[[np.ndarray], Body]]]  # workload -> (path, body)
    answer: Callable[[dict], np.ndarray]  # response JSON -> probabilities of the one image
    env: dict[str, str] = field(default_factory=dict)
    # How it is configured (workers, batching, logging, process switches): printed and saved.
    config: str = ""
    # Per workload, when its answer differs from ``answer``'s shape (an explainer's JSON).
    answers: dict[str, Callable[[dict], np.ndarray]] = field(default_factory=dict)
    # Explanation workloads: (response JSON, image) -> the completeness gap of the integrated
    # gradients it returned, |sum(attributions) - (f(x) - f(baseline))| / |f(x) - f(baseline)|
    # of the output the server explained (computed by the harness from the returned map).
    gaps: dict[str, Callable[[dict, np.ndarray], float]] = field(default_factory=dict)
    gap_found: dict[str, float] = field(default_factory=dict)
    cwd: Path = REPO
    peer_env: str | None = None  # runs inside benchmarks/.envs/<peer_env>, as if activated
    port: int = 0
    version: str = ""
    floor: bool = False  # computes nothing: not a peer, and its answers are not checked


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- the model, in every store


def train_champion(tmp: Path) -> tuple[dict[str, Path | str], np.ndarray, np.ndarray]:
    """Train the seed CNN (seeded, 3 epochs on 4,000 digits); log and register it in a
    temporary MLflow store with the ``champion`` alias, copy it into a temporary BentoML store
    for clearsight, and keep the ``.keras`` file for the peers that load a file."""
    os.environ["BENTOML_HOME"] = str(tmp / "bentoml")
    tracking = f"sqlite:///{tmp / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = tracking
    import bentoml
    import keras
    import mlflow
    from mlflow import MlflowClient

    from clearsight.data.sources import load_embedded
    from clearsight.digits import to_model_input
    from clearsight.inference.provenance import Provenance
    from clearsight.model.cnn import build_cnn
    from clearsight.tracking.run import log_keras_model
    from serving.bento_store import MODEL_FILE

    data = load_embedded()
    order = np.random.default_rng(0).permutation(len(data.labels))  # the source is class-sorted
    x, y = to_model_input(data.images[order]), data.labels[order]
    keras.utils.set_random_seed(0)
    model = build_cnn()
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x[:4000], y[:4000], batch_size=64, epochs=3, verbose=0)
    mlflow.set_experiment("serve-benchmark")
    with mlflow.start_run():
        log_keras_model(model, REGISTERED)
    client = MlflowClient(tracking)
    client.set_registered_model_alias(REGISTERED, "champion", "1")
    model_dir = tmp / "registered"
    mlflow.artifacts.download_artifacts(f"models:/{REGISTERED}@champion", dst_path=str(model_dir))
    model_file = tmp / "model.keras"
    model.save(model_file)
    provenance = Provenance(name=REGISTERED, version="1", run_id=None, registry_alias="champion")
    metadata = {k: v for k, v in provenance.to_dict().items() if v is not None}
    with bentoml.models.create(f"{REGISTERED}:benchmark", metadata=metadata) as stored:
        model.save(stored.path_of(MODEL_FILE))
    digits = x[4000:4100]
    reference = keras.ops.convert_to_numpy(model(digits, training=False))
    return (
        {
            "tracking": tracking,
            "bento_model": f"{REGISTERED}:benchmark",
            "model_dir": model_dir,
            "model_file": model_file,
            "model": model,  # the harness's copy: completeness gaps of peers' explanations
        },
        digits,
        reference,
    )


# ---------------------------------------------------------------- the servers


# Compared at equal or smaller completeness gap: alibi's default IG (50 Gauss-Legendre steps)
# left a median gap of 0.026-0.083 % on this harness's champions, clearsight's default target
# (0.1 %) a median of 0.03-0.05 %; so clearsight is asked for a target of 0.02 %, which costs
# it more gradient evaluations (never more than 32) and keeps its maps at least as complete.
IG_TARGET_GAP = 2e-4
EXPLAIN_OPTIONS = {"parameters": {"integrated_gradients": {"target_gap": IG_TARGET_GAP}}}


def clearsight_server(paths: dict) -> Server:
    from serving.bento_store import serve_command

    def body(explain: bool) -> Callable[[np.ndarray], dict]:
        def make(image: np.ndarray) -> dict:
            data = image[..., 0].round(4).tolist()
            request = {"images": [{"kind": "array", "scale": "0-1", "data": data}]}
            return request | {"explain": EXPLAIN_OPTIONS if explain else False}

        return make

    return Server(
        "clearsight",
        lambda port: serve_command(
            "serving.service:Clearsight", host="127.0.0.1", port=port, model=paths["bento_model"]
        ),
        "/readyz",
        {
            PREDICT: ("/predict", body(False)),
            PREDICT_OIP_JSON: (f"/v2/models/{REGISTERED}/infer", _oip_json),
            PREDICT_OIP_BINARY: (f"/v2/models/{REGISTERED}/infer", _oip_binary),
            EXPLAINED: ("/predict", body(True)),
        },
        lambda answer: np.asarray(answer["results"][0]["probabilities"]),
        answers={
            PREDICT_OIP_JSON: lambda answer: np.asarray(answer["outputs"][0]["data"]),
            PREDICT_OIP_BINARY: lambda answer: np.asarray(answer["outputs"][0]["data"]),
        },
        gaps={EXPLAINED: lambda answer, _: _reported_gap(answer)},
        config="`bentoml serve serving.service:Clearsight` as shipped: 1 worker, adaptive "
        "micro-batching, forward off the event loop (LiteRT), asyncio loop, load shedding in "
        "front of BentoML's middlewares, access log and unsampled tracing spans off, GC "
        f"frozen after warm-up and young GC rounds every {YOUNG_THRESHOLD:,} objects, traffic "
        "log on; "
        f"explanation = the default methods, IG (adaptive, target_gap {IG_TARGET_GAP:.2%}, "
        "<= 32 evaluations: equal or smaller completeness gap than the peers' alibi) + "
        "Grad-CAM",
        # The traffic log is on by default (as shipped); a fresh folder per run, never the
        # checkout's data/traffic.
        env={
            "BENTOML_HOME": os.environ["BENTOML_HOME"],
            "CLEARSIGHT_TRAFFIC_DIR": str(Path(os.environ["BENTOML_HOME"]).parent / "traffic"),
        },
        version=f"clearsight {clearsight.__version__}, bentoml "
        + importlib.metadata.version("bentoml"),
    )


def oip_tensor(image: np.ndarray) -> dict:
    """An Open Inference Protocol request of one image as a JSON tensor (every OIP server)."""
    tensor = {"name": "image", "shape": [1, *image.shape], "datatype": "FP32"}
    return {"inputs": [tensor | {"data": image.ravel().round(4).tolist()}]}


def _oip_json(image: np.ndarray) -> dict:
    return oip_tensor(image) | {"outputs": [{"name": "probabilities"}]}


def _oip_binary(image: np.ndarray) -> tuple[bytes, dict[str, str]]:
    raw = np.ascontiguousarray(image[None], dtype="<f4").tobytes()
    tensor = {"name": "image", "shape": [1, *image.shape], "datatype": "FP32"}
    header = json.dumps(
        {
            "inputs": [tensor | {"parameters": {"binary_data_size": len(raw)}}],
            "outputs": [{"name": "probabilities"}],
        }
    ).encode()
    return header + raw, {
        "content-type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }


def _reported_gap(answer: dict) -> float:
    """The completeness gap clearsight reports with its integrated gradients (logit units)."""
    explanations = answer["results"][0]["explanations"]
    ig = next(e for e in explanations if e["method"] == "integrated_gradients")
    return float(ig["quality"]["completeness_gap"])


def peer_bin(peer: str, name: str) -> str:
    return str(peer_envs.python_of(peer).parent / name)


def mlflow_server(paths: dict) -> Server:
    return Server(
        "mlflow",
        lambda port: [
            peer_bin("mlflow", "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{REGISTERED}@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "1",
        ],
        "/ping",
        {PREDICT: ("/invocations", lambda image: {"inputs": image[None].tolist()})},
        lambda answer: np.asarray(answer["predictions"][0]),
        env={"MLFLOW_TRACKING_URI": paths["tracking"]},
        config="`mlflow models serve --env-manager local -w 1` (uvicorn, 1 worker; the pyfunc "
        "calls `model.predict` per request); MLflow offers no batching or logging switches",
        peer_env="mlflow",
        version="mlflow " + peer_envs.version_of("mlflow", "mlflow"),
    )


def write_mlserver_settings(repo: Path, port: int) -> None:
    """MLServer's server-wide ``settings.json``: one worker on its one core, debug off."""
    settings = {
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": 1,
        "debug": False,
    }
    (repo / "settings.json").write_text(json.dumps(settings))


def pyfunc_call_s(model_dir: Path, image: np.ndarray) -> float:
    """Median seconds of one ``pyfunc.predict`` call on one image: what MLServer's MLflow
    runtime calls per batch, so the batching window it waits for is sized to it."""
    import mlflow

    model = mlflow.pyfunc.load_model(str(model_dir))
    model.predict(image[None])
    times = []
    for _ in range(10):
        began = time.perf_counter()
        model.predict(image[None])
        times.append(time.perf_counter() - began)
    return float(np.median(times))


def mlserver_server(paths: dict, tmp: Path, image: np.ndarray) -> Server:
    """MLServer's model repository: ``settings.json`` (server) and ``model-settings.json``.

    Adaptive batching with a window of one model call: MLServer's docs say to tune
    ``max_batch_time`` per model; a 5 ms window against a ~80 ms pyfunc call (the earlier
    setting) gathers nothing and only delays, and a window longer than a call adds latency."""
    repo = tmp / "mlserver"
    window_s = round(pyfunc_call_s(paths["model_dir"], image), 3)
    model = repo / REGISTERED
    model.mkdir(parents=True)

    def build(port: int) -> list[str]:
        write_mlserver_settings(repo, port)
        (model / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": REGISTERED,
                    "implementation": "mlserver_mlflow.MLflowRuntime",
                    "parameters": {"uri": str(paths["model_dir"])},
                    # Adaptive batching (off by default; MLServer's docs: tune per model).
                    "max_batch_size": 32,
                    "max_batch_time": window_s,
                }
            )
        )
        return [peer_bin("mlserver", "mlserver"), "start", str(repo)]

    return Server(
        "mlserver",
        build,
        f"/v2/models/{REGISTERED}/ready",
        {PREDICT: (f"/v2/models/{REGISTERED}/infer", oip_tensor)},
        lambda answer: np.asarray(answer["outputs"][0]["data"][:10]),
        config=f"`mlserver start`, mlserver_mlflow.MLflowRuntime on the registered model: "
        f"parallel_workers 1, debug off, adaptive batching max_batch_size 32, max_batch_time "
        f"{window_s * 1e3:.0f} ms (one pyfunc call, measured here)",
        peer_env="mlserver",
        version="mlserver "
        + peer_envs.version_of("mlserver", "mlserver")
        + ", mlserver-mlflow "
        + peer_envs.version_of("mlserver", "mlserver-mlflow"),
    )


def mlserver_alibi_server(paths: dict, tmp: Path) -> Server:
    """MLServer's alibi-explain runtime, configured as its docs and tests do: an
    ``integrated_gradients`` explainer whose ``infer_uri`` is the model file (white box: the
    runtime loads it with ``tf.keras.models.load_model`` and explains the served softmax
    output, target = the predicted class, black baseline). The OIP v2 infer route answers one
    output, ``explanation``: alibi's Explanation JSON (attributions, predictions, deltas)."""
    repo = tmp / "mlserver-alibi"
    name = f"{REGISTERED}-explainer"
    model = repo / name
    model.mkdir(parents=True)
    init = {"n_steps": 50, "method": "gausslegendre"}  # alibi's defaults, as MLServer's tests

    def build(port: int) -> list[str]:
        write_mlserver_settings(repo, port)
        (model / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": name,
                    "implementation": "mlserver_alibi_explain.AlibiExplainRuntime",
                    "parameters": {
                        "extra": {
                            "explainer_type": "integrated_gradients",
                            "infer_uri": str(paths["model_file"]),
                            "init_parameters": init,
                        }
                    },
                }
            )
        )
        return [peer_bin("mlserver-alibi", "mlserver"), "start", str(repo)]

    def explanation(response: dict) -> dict:
        return json.loads(response["outputs"][0]["data"][0])["data"]

    def probabilities(response: dict) -> np.ndarray:  # the explained model's output
        return np.asarray(explanation(response)["predictions"][0])

    return Server(
        "mlserver-alibi",
        build,
        f"/v2/models/{name}/ready",
        {EXPLAINED: (f"/v2/models/{name}/infer", oip_tensor)},
        probabilities,
        gaps={
            EXPLAINED: lambda response, image: completeness_gap(
                paths["model"], image, np.asarray(explanation(response)["attributions"][0])
            )
        },
        config="`mlserver start` with mlserver_alibi_explain.AlibiExplainRuntime: 1 parallel "
        "worker (MLServer's default), debug off, metrics as default; integrated_gradients, "
        "infer_uri = the .keras file (explains the softmax output of the predicted class), "
        "n_steps 50, gausslegendre, internal_batch_size 100 (alibi's defaults), black "
        "baseline; no adaptive batching (the runtime answers one explanation string per "
        "request, which MLServer's batcher cannot split)",
        cwd=repo,
        peer_env="mlserver-alibi",
        version=", ".join(
            f"{package} {peer_envs.version_of('mlserver-alibi', package)}"
            for package in ("mlserver", "mlserver-alibi-explain", "alibi")
        ),
    )


def kserve_server(paths: dict) -> Server:
    """KServe's model server with a custom explainer: alibi's IntegratedGradients (its defaults)
    on the served model's probabilities; ``:explain`` returns alibi's explanation JSON."""
    peers = REPO / "benchmarks" / "peers"

    def body(image: np.ndarray) -> dict:
        return {"instances": [image[..., 0].round(4).tolist()]}

    def answer(response: dict) -> np.ndarray:
        return np.asarray(response["predictions"][0])

    def explained(response: dict) -> np.ndarray:
        return np.asarray(response["data"]["predictions"][0])

    def gap(response: dict, image: np.ndarray) -> float:
        attributions = np.asarray(response["data"]["attributions"][0][0])
        return completeness_gap(paths["model"], image, attributions, "probabilities")

    return Server(
        "kserve",
        lambda port: [
            str(peer_envs.python_of("kserve")),
            str(peers / "kserve_server.py"),
            "--model_file",
            str(paths["model_file"]),
            "--model_name",
            REGISTERED,
            "--http_port",
            str(port),
            "--workers",
            "1",
            "--enable_grpc",
            "false",
            "--enable_latency_logging",
            "false",
            "--event-loop",
            "asyncio",
            "--log_config_file",
            str(peers / "kserve_log_config.json"),
        ],
        f"/v1/models/{REGISTERED}",
        {
            PREDICT: (f"/v1/models/{REGISTERED}:predict", body),
            EXPLAINED: (f"/v1/models/{REGISTERED}:explain", body),
        },
        answer,
        answers={EXPLAINED: explained},
        gaps={EXPLAINED: gap},
        config="`ModelServer().start([model])`, a `kserve.Model` with `load`/`predict`/"
        "`explain`: 1 worker, REST only (gRPC off), latency logging off, log config with no "
        "access log and per-request timings off, asyncio loop, GC frozen after warm-up, no "
        "batching (KServe's Python server has none); explanation = alibi 0.9.6 "
        "IntegratedGradients, its defaults (50 Gauss-Legendre steps), of the probabilities, "
        "black baseline, predicted class, returned as `explanation.to_json()`",
        peer_env="kserve",
        version="kserve "
        + peer_envs.version_of("kserve", "kserve")
        + ", alibi "
        + peer_envs.version_of("kserve", "alibi"),
    )


def floor_server(clearsight: Server) -> Server:
    """``peers/bentoml_floor.py``: the same body to the same framework, a constant answer."""
    return Server(
        FLOOR,
        lambda port: [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            "bentoml_floor:Floor",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        "/readyz",
        {PREDICT: clearsight.endpoints[PREDICT]},
        lambda answer: np.asarray(answer["results"][0]["probabilities"]),
        config="not a peer: clearsight's BentoML and switches (1 worker, asyncio loop, access "
        "log and tracing spans off, GC frozen), the /predict body parsed, a constant answer; "
        "no model, no validation, no monitoring",
        env={"BENTOML_HOME": str(Path(os.environ["BENTOML_HOME"]).parent / "bentoml-floor")},
        cwd=REPO / "benchmarks" / "peers",
        version="bentoml " + importlib.metadata.version("bentoml"),
        floor=True,
    )


def bentoml_server(paths: dict) -> Server:
    return Server(
        "bentoml",
        lambda port: [
            peer_bin("bentoml", "bentoml"),
            "serve",
            "bentoml_service:Classifier",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        "/readyz",
        {PREDICT: ("/predict", lambda image: {"images": image[None].round(4).tolist()})},
        lambda answer: np.asarray(answer[0]),
        config="`bentoml serve` of a hand-written service: 1 worker, adaptive batching "
        "(`max_batch_size=64`, `max_latency_ms=1000` as BentoML's docs), the model called in "
        "BentoML's thread pool, asyncio loop (no uvloop installed), access log and tracing "
        "spans off, GC frozen after warm-up; no explanation",
        env={
            "PEER_MODEL_FILE": str(paths["model_file"]),
            "BENTOML_HOME": str(Path(os.environ["BENTOML_HOME"]).parent / "bentoml-peer"),
        },
        cwd=REPO / "benchmarks" / "peers",
        peer_env="bentoml",
        version="bentoml " + peer_envs.version_of("bentoml", "bentoml"),
    )


# ---------------------------------------------------------------- processes and cores


def cores() -> tuple[set[int], set[int]]:
    """(server cores, load-generator cores): the last usable core drives the load."""
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return set(usable), set(usable)
    return set(usable[:-1]), {usable[-1]}


def start(server: Server, log: Path, server_cores: set[int]) -> subprocess.Popen:
    server.port = free_port()
    command = server.build(server.port)
    env = os.environ | server.env | {"PYTHONUNBUFFERED": "1"}
    if server.peer_env:  # an activated virtual environment: its tools first on PATH
        bin_dir = peer_envs.python_of(server.peer_env).parent
        env |= {"PATH": f"{bin_dir}:{env['PATH']}", "VIRTUAL_ENV": str(bin_dir.parent)}
    return subprocess.Popen(
        command,
        cwd=server.cwd,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: os.sched_setaffinity(0, server_cores),
    )


def wait_ready(server: Server, process: subprocess.Popen, log: Path, timeout_s: float = 300):
    import httpx

    url = f"http://127.0.0.1:{server.port}{server.ready}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{server.name} exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{server.name} not ready in {timeout_s} s:\n{log.read_text()[-3000:]}")


def encode(body: Body) -> tuple[bytes, dict[str, str]]:
    """A request body as bytes with its headers (JSON unless the server's body says not)."""
    if isinstance(body, tuple):
        return body
    return json.dumps(body).encode(), {"content-type": "application/json"}


def completeness_gap(
    model, image: np.ndarray, attributions: np.ndarray, output: str = "probabilities"
) -> float:
    """Integrated gradients' completeness gap of a map a peer returned, from a black baseline,
    on the predicted class of the output it explained (``probabilities`` for an explainer
    wrapped around the served model, ``logits`` for the layer before the softmax):
    |sum(attributions) - (f(x) - f(0))| / |f(x) - f(0)| (``clearsight.explain.quality``)."""
    import keras

    if output == "logits":
        model = keras.Model(model.inputs, model.get_layer("probabilities").input)
    x = np.stack([image, np.zeros_like(image)]).astype(np.float32)
    out = keras.ops.convert_to_numpy(model(x, training=False))
    target = int(out[0].argmax())
    difference = float(out[0, target] - out[1, target])
    return abs(float(np.sum(attributions)) - difference) / max(abs(difference), 1e-12)


def check_answers(server: Server, digits: np.ndarray, reference: np.ndarray) -> None:
    """Each server must give the model's own probabilities: nobody is timed on a wrong answer.
    An explaining server's completeness gap is measured here too, on ``GAP_IMAGES`` digits."""
    import httpx

    for workload, (path, body) in server.endpoints.items():
        gaps = []
        for i in range(GAP_IMAGES if workload in server.gaps else 3):
            content, headers = encode(body(digits[i]))
            response = httpx.post(
                f"http://127.0.0.1:{server.port}{path}",
                content=content,
                headers=headers,
                timeout=60,
            )
            if response.status_code != 200:
                raise SystemExit(
                    f"{server.name} {workload}: {response.status_code} {response.text[:500]}"
                )
            probs = server.answers.get(workload, server.answer)(response.json())
            if not np.allclose(probs, reference[i], atol=2e-3):
                raise SystemExit(f"{server.name} {workload} answered {probs}, not {reference[i]}")
            if workload in server.gaps:
                gaps.append(server.gaps[workload](response.json(), digits[i]))
        if gaps:
            server.gap_found[workload] = float(np.median(gaps))
            print(f"{server.name} {workload}: median completeness gap {np.median(gaps):.4%}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


# ---------------------------------------------------------------- the load generator


async def _post(session, url: str, request: tuple[bytes, dict[str, str]]) -> bool:
    body, headers = request
    try:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            return response.status == 200
    except Exception:  # a refused or dropped connection is an error the table counts
        return False


async def closed_loop(
    url: str,
    bodies: list[tuple[bytes, dict[str, str]]],
    concurrency: int,
    seconds: float,
    warm_up_s: float,
) -> tuple[list[float], int, int, float]:
    """``concurrency`` clients, each sending its next request when the last one is answered."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def run(duration: float) -> tuple[list[float], int, int, float]:
            latencies: list[float] = []
            errors = 0
            sent = 0
            stop_at = time.perf_counter() + duration

            async def client(offset: int) -> None:
                nonlocal errors, sent
                i = offset
                while time.perf_counter() < stop_at:
                    began = time.perf_counter()
                    ok = await _post(session, url, bodies[i % len(bodies)])
                    latencies.append(time.perf_counter() - began)
                    errors += not ok
                    sent += 1
                    i += concurrency

            began = time.perf_counter()
            await asyncio.gather(*(client(k) for k in range(concurrency)))
            return latencies, errors, sent, time.perf_counter() - began

        await run(warm_up_s)
        return await run(seconds)


async def open_loop(
    url: str,
    bodies: list[tuple[bytes, dict[str, str]]],
    rate: float,
    seconds: float,
    warm_up_s: float,
    seed: int = 0,
) -> tuple[list[float], int, int, float]:
    """Poisson arrivals at ``rate``/s; latency from each request's scheduled send time.

    Arrivals run for ``warm_up_s`` first and only later ones are counted, as in the closed
    loop: the client's connection pool starts empty, and the burst of connections it opens in
    the first second is a cold start of the client, not the server's steady state."""
    import aiohttp

    total = warm_up_s + seconds
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=int(rate * total * 1.2) + 10)
    schedule = np.cumsum(gaps)
    schedule = schedule[schedule < total]
    connector = aiohttp.TCPConnector(limit=512)
    timeout = aiohttp.ClientTimeout(total=120)
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        began = time.perf_counter()

        async def one(i: int, at: float) -> None:
            nonlocal errors
            delay = began + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            ok = await _post(session, url, bodies[i % len(bodies)])
            if at >= warm_up_s:
                latencies.append(time.perf_counter() - (began + at))
                errors += not ok

        await asyncio.gather(*(one(i, at) for i, at in enumerate(schedule)))
        wall = time.perf_counter() - began - warm_up_s
    return latencies, errors, int((schedule >= warm_up_s).sum()), wall


def row(server: Server, workload: str, mode: str, load: str, result) -> Row:
    latencies, errors, sent, wall = result
    ms = 1e3 * np.asarray(latencies or [np.nan])
    return Row(
        server.name,
        workload,
        mode,
        load,
        sent,
        wall,
        sent / wall,
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 95)),
        float(np.percentile(ms, 99)),
        errors,
        server.gap_found.get(workload),
    )


def measure(
    server: Server, workload: str, digits: np.ndarray, args, pid: int, profiles: dict
) -> list[Row]:
    path, body = server.endpoints[workload]
    url = f"http://127.0.0.1:{server.port}{path}"
    bodies = [encode(body(d)) for d in digits]
    rows = []
    for c in CLOSED_LOOP:
        with profiled(args, pid, f"{server.name} {workload} c={c}", c == 32, profiles):
            result = asyncio.run(closed_loop(url, bodies, c, args.seconds, args.warm_up))
        rows.append(row(server, workload, "closed", f"c={c}", result))
        print(_line(rows[-1]), flush=True)
    capacity = max(r.rps for r in rows)
    for fraction in OPEN_LOOP:
        rate = fraction * capacity
        name = f"{server.name} {workload} open {fraction:.0%}"
        with profiled(args, pid, name, fraction == 0.5 and workload == PREDICT, profiles):
            result = asyncio.run(open_loop(url, bodies, rate, args.seconds, args.warm_up))
        rows.append(row(server, workload, "open", f"{fraction:.0%} = {rate:.0f}/s", result))
        print(_line(rows[-1]), flush=True)
    for rate in args.rates if workload == PREDICT else ():
        result = asyncio.run(open_loop(url, bodies, rate, args.seconds, args.warm_up))
        rows.append(row(server, workload, "open", f"fixed {rate:.0f}/s", result))
        print(_line(rows[-1]), flush=True)
    return rows


@contextmanager
def profiled(args, pid: int, name: str, wanted: bool, profiles: dict) -> Iterator[None]:
    """With ``--profile DIR``: py-spy samples the server (and its workers) during this level."""
    if not (args.profile and wanted):
        yield
        return
    args.profile.mkdir(parents=True, exist_ok=True)
    raw = args.profile / (name.replace(" ", "_").replace("%", "pct").replace("+", "") + ".txt")
    spy = profiling.record(pid, args.seconds + args.warm_up, raw)
    try:
        yield
    finally:
        try:
            spy.wait(timeout=120)
        except subprocess.TimeoutExpired:
            spy.kill()
    if raw.exists():
        profiles[name] = profiling.summarise(raw) | {"raw": str(raw)}
        print(profiling.render(name, profiles[name]), flush=True)
    else:
        print(f"no profile of {name}: see {raw.with_suffix('.log')}", flush=True)


# ---------------------------------------------------------------- report


def _line(r: Row) -> str:
    return (
        f"| {r.server} | {r.workload} | {r.mode} | {r.load} | {r.requests} | {r.rps:.0f} | "
        f"{r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.p99_ms:.1f} | {r.errors} |"
    )


HEADER = (
    "| server | workload | loop | load | requests | req/s | p50 ms | p95 ms | p99 ms | errors |\n"
    "|---|---|---|---|---:|---:|---:|---:|---:|---:|"
)


def verdicts(rows: list[Row]) -> dict[str, dict]:
    def find(server: str, workload: str, load: str) -> Row | None:
        return next(
            (
                r
                for r in rows
                if (r.server, r.workload) == (server, workload) and r.load.startswith(load)
            ),
            None,
        )

    checks: dict[str, dict] = {}
    ours = find("clearsight", PREDICT, "c=32")
    peers = [
        r for r in rows if r.workload == PREDICT and r.load == "c=32" and r.server not in NOT_PEERS
    ]
    if ours and peers:
        best = max(peers, key=lambda r: r.rps)
        ratio = ours.rps / best.rps
        checks["predict req/s at c=32 vs best peer"] = {
            "value": ratio,
            "target": TARGET_PREDICT_RATIO,
            "best_peer": best.server,
            "met": ratio >= TARGET_PREDICT_RATIO,
        }
    floor = find(FLOOR, PREDICT, "50%")
    for workload in (PREDICT, PREDICT_OIP_JSON, PREDICT_OIP_BINARY):
        half = find("clearsight", workload, "50%")
        if half:
            checks[f"clearsight {workload} p99 at 50 % of capacity (ms)"] = {
                "value": half.p99_ms,
                "target": TARGET_P99_MS,
                "met": half.p99_ms <= TARGET_P99_MS,
            } | ({"floor_p99_ms": floor.p99_ms} if floor else {})
    explained = find("clearsight", EXPLAINED, "c=32")
    explainers = [
        r for r in rows if r.workload == EXPLAINED and r.load == "c=32" and r.server != "clearsight"
    ]
    if explained and explainers:
        # At equal or smaller completeness gap: a peer whose explanations are more complete
        # than ours is not beaten by computing less, and the check says so.
        best = max(explainers, key=lambda r: r.rps)
        ratio = explained.rps / best.rps
        ours_gap, their_gap = explained.completeness_gap, best.completeness_gap
        equal_or_smaller = ours_gap is not None and their_gap is not None and ours_gap <= their_gap
        checks["predict + explanation req/s at c=32 vs best peer explainer"] = {
            "value": ratio,
            "target": TARGET_EXPLAIN_RATIO,
            "best_peer": best.server,
            "gap_clearsight": ours_gap,
            "gap_peer": their_gap,
            "met": ratio >= TARGET_EXPLAIN_RATIO and equal_or_smaller,
        }
        ours_half = find("clearsight", EXPLAINED, "50%")
        theirs_half = [
            r
            for r in rows
            if r.workload == EXPLAINED
            and r.mode == "open"
            and r.load.startswith("50%")
            and r.server != "clearsight"
        ]
        if ours_half and theirs_half:
            lowest = min(theirs_half, key=lambda r: r.p99_ms)
            checks["predict + explanation p99 at 50 % load vs lowest peer (ms)"] = {
                "value": ours_half.p99_ms,
                "target": lowest.p99_ms,
                "best_peer": lowest.server,
                "met": ours_half.p99_ms < lowest.p99_ms,
            }
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="Per load level.")
    parser.add_argument("--warm-up", type=float, default=2.0, help="Seconds before each level.")
    parser.add_argument(
        "--only",
        default=f"clearsight,{FLOOR},mlflow,mlserver,mlserver-alibi,kserve,bentoml",
        help="Comma-separated servers to run.",
    )
    parser.add_argument("--json", type=Path, help="Also write the table and checks as JSON.")
    parser.add_argument(
        "--rates",
        type=lambda text: [float(r) for r in text.split(",") if r],
        default=[],
        help="Extra open-loop levels for predict at these requests/s, the same for every "
        "server (comma-separated): a tail read at one absolute rate, whatever each capacity",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy each server at c=32 and at 50 %% of its capacity (predict) into this folder",
    )
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    command = "uv run --no-sync python benchmarks/serve.py " + shlex.join(sys.argv[1:])
    for peer in names:
        if peer not in NOT_PEERS:
            peer_envs.ensure(peer)
    server_cores, load_cores = cores()
    with open("/proc/loadavg") as handle:
        load_before = handle.read().split()[:3]

    with tempfile.TemporaryDirectory(prefix="clearsight-serve-bench-") as tmp_name:
        tmp = Path(tmp_name)
        paths, digits, reference = train_champion(tmp)
        factories = {
            "clearsight": lambda: clearsight_server(paths),
            "mlflow": lambda: mlflow_server(paths),
            "mlserver": lambda: mlserver_server(paths, tmp, digits[0]),
            "mlserver-alibi": lambda: mlserver_alibi_server(paths, tmp),
            "kserve": lambda: kserve_server(paths),
            "bentoml": lambda: bentoml_server(paths),
            FLOOR: lambda: floor_server(clearsight_server(paths)),
        }
        servers = [factories[n]() for n in names]
        for server in servers:  # clearsight's GC switch, offered to every other process
            if server.name != "clearsight":
                server.env |= {
                    "PYTHONPATH": str(REPO / "benchmarks" / "peers" / "gc_rounds"),
                    "PEER_GC_YOUNG_THRESHOLD": str(YOUNG_THRESHOLD),
                }
                server.config += (
                    f"; young GC rounds every {YOUNG_THRESHOLD:,} objects (clearsight's "
                    "default, set by peers/gc_rounds/sitecustomize.py)"
                )
        logs = {s.name: tmp / f"{s.name}.log" for s in servers}
        rows: list[Row] = []
        profiles: dict[str, dict] = {}
        print(
            f"servers on cores {sorted(server_cores)}, load generator on cores "
            f"{sorted(load_cores)}",
            flush=True,
        )
        # The load generator trained the champion in this process: TensorFlow's ~500,000
        # long-lived objects would make each full garbage collection a pause of the client,
        # counted as the server's latency in the open loop. Freeze them first.
        gc.collect()
        gc.freeze()
        # One server at a time: an idle peer still wakes up (metrics, health loops, its own
        # event loop) on the servers' core, and would tax whoever is being measured.
        for server in servers:
            process = start(server, logs[server.name], server_cores)
            try:
                wait_ready(server, process, logs[server.name])
                if not server.floor:
                    check_answers(server, digits, reference)
                print(f"ready and correct: {server.name} ({server.version})\n{HEADER}", flush=True)
                os.sched_setaffinity(0, load_cores)
                for workload in server.endpoints:
                    rows += measure(server, workload, digits, args, process.pid, profiles)
            finally:
                os.sched_setaffinity(0, server_cores | load_cores)
                stop(process)
    with open("/proc/loadavg") as handle:
        load_after = handle.read().split()[:3]

    checks = verdicts(rows)
    env = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": f"{cpu_name()}, {len(os.sched_getaffinity(0) | server_cores)} cores",
        "server_cores": sorted(server_cores),
        "load_generator_cores": sorted(load_cores),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "python": platform.python_version(),
        "servers": {s.name: s.version for s in servers},
        "configs": {s.name: s.config for s in servers},
        "model_runtime": {n: importlib.metadata.version(n) for n in ("tensorflow", "keras")},
    }
    print(f"\n`{command}`\n")
    for key, value in env.items():
        print(f"- {key}: {value}")
    print(f"\n{HEADER}")
    for r in rows:
        print(_line(r))
    print()
    for name, check in checks.items():
        print(
            f"- {'met' if check['met'] else 'MISSED'}: {name}: {check['value']:.2f} "
            f"(target {check['target']})"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.json.with_suffix(".tmp")
        temporary.write_text(
            json.dumps(
                env | {"rows": [asdict(r) for r in rows], "checks": checks, "profiles": profiles},
                indent=2,
            )
        )
        os.replace(temporary, args.json)


if __name__ == "__main__":
    main()
