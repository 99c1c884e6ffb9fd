"""Row 7 of "What survives what" (README): the service under 4x its measured capacity.

Capacity is measured first (a closed loop of 8 clients, 3 s), then requests arrive open-loop
at 4x that rate for ``OVERLOAD_S`` seconds, each on a new connection (the harshest case: every
arrival costs the server an accept and a close). The service must shed with 503 and
``Retry-After`` rather than let requests time out, keep answering a share of its capacity
(``MIN_GOODPUT``), keep its memory (RSS of the server process and its workers) bounded, and
answer normally at once when the load stops. Measured numbers are printed (``pytest -s``).

What makes it pass (README, "What survives what"): the event loop is asyncio's, which accepts
every waiting connection at once (uvloop accepts one per loop iteration, so the backlog stayed
in the kernel, unseen: 0 % shed, 54 % timed out), and ``serving.shedding.FrontDoor`` refuses
requests past ``max_in_flight`` before their body is read, in front of BentoML's middlewares.
The load generator (``flood``) shares the 2 cores with the server, so it is built to cost
little per request (about 50 us of Python and 90 us in the kernel, measured).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx
import pytest

from .conftest import Registry, Server
from .flood import flood

# Not marked ``faults``: it shares the serving suite's running server (make test runs it).
pytestmark = pytest.mark.slow

OVERLOAD_S = 30  # as the fault contract says: 4x capacity for 30 s
CLIENT_TIMEOUT_S = 10
MIN_GOODPUT = 0.15  # share of capacity still answered during the flood
RECOVERY_WAIT_S = 120  # later tests share this server: leave it answering again


def tree_rss_mb(root: int) -> float:
    """Resident memory of a process and all its descendants (the BentoML workers included:
    they run in process groups of their own)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            status = (proc / "status").read_text()
        except OSError:
            continue
        pid = int(proc.name)
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        kb = [line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")]
        rss[pid] = int(kb[0]) if kb else 0
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(rss.get(pid, 0) for pid in tree) / 1024


def requests_for(digits, model: str) -> list[tuple[str, dict]]:
    """One cheap prediction on each route that can answer 503: JSON, BentoML API, OIP."""
    image = digits[0][3]
    item = {"kind": "array", "scale": "0-255", "data": image.tolist()}
    tensor = {"name": "image", "shape": [1, 28, 28], "datatype": "UINT8"}
    return [
        ("/predict", {"images": [item], "explain": False}),
        ("/classify", {"images": [item]}),
        (f"/v2/models/{model}/infer", {"inputs": [tensor | {"data": image.ravel().tolist()}]}),
    ]


async def closed_loop(url: str, routes: list, clients: int, seconds: float) -> float:
    """Requests per second answered by ``clients`` back-to-back callers."""
    done = 0
    deadline = time.monotonic() + seconds

    async def caller(http: httpx.AsyncClient) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            path, payload = routes[done % len(routes)]
            response = await http.post(path, json=payload)
            assert response.status_code == 200, (path, response.text[:300])
            done += 1

    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        began = time.monotonic()
        await asyncio.gather(*(caller(http) for _ in range(clients)))
        return done / (time.monotonic() - began)


class Answer:
    """What a raw HTTP/1.1 request got: status, headers, body, and the path it went to."""

    def __init__(self, path: str, head: bytes, body: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        self.path = path
        self.status_code = int(lines[0].split()[1])
        self.headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
        }
        self.body = body


def raw_request(url: str, path: str, payload: dict) -> bytes:
    """The bytes of one POST, built once: the load generator must cost far less per request
    than the server (httpx alone could not offer 4x a 2-core server's rate from 2 cores)."""
    host = url.removeprefix("http://")
    data = json.dumps(payload).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + data


def open_loop(url: str, routes: list, rate: float, seconds: float) -> list:
    """Requests sent at ``rate`` per second whatever happens to the earlier ones (by
    ``flood``, which costs the shared cores little); each outcome is an ``Answer`` or the
    exception (a timeout, a reset) the client got."""
    host, port = url.removeprefix("http://").split(":")
    prepared = [raw_request(url, path, payload) for path, payload in routes]
    outcomes = flood((host, int(port)), prepared, rate, seconds, CLIENT_TIMEOUT_S)
    answers: list = []
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, Exception):
            answers.append(outcome)
            continue
        head, _, body = outcome.partition(b"\r\n\r\n")
        try:
            answers.append(Answer(routes[i % len(routes)][0], head, body))
        except (IndexError, ValueError) as err:  # closed without an HTTP response
            answers.append(err)
    return answers


def drained(client: httpx.Client, quiet_s: float = 2.0, limit_s: float = 120.0) -> None:
    """Wait until no forward pass ran for ``quiet_s``: requests the clients gave up on may
    still be queued in the server, and later tests of this module's server count passes."""
    pattern = re.compile(r"^clearsight_forward_batch_size_count (\S+)", re.M)
    deadline = time.monotonic() + limit_s
    last = None
    while time.monotonic() < deadline:
        match = pattern.search(client.get("/metrics").text)
        count = match[1] if match else None
        if count == last:
            return
        last = count
        time.sleep(quiet_s)


def test_overload_sheds_with_503_and_recovers(
    server: Server, client: httpx.Client, registry: Registry, digits
) -> None:
    routes = requests_for(digits, registry.settings.tracking.registered_model)
    asyncio.run(closed_loop(server.url, routes, 8, 1))  # warm connections and paths
    capacity = asyncio.run(closed_loop(server.url, routes, 8, 3))
    rss_before = tree_rss_mb(server.process.pid)

    outcomes = open_loop(server.url, routes, 4 * capacity, OVERLOAD_S)
    rss_after = tree_rss_mb(server.process.pid)
    responses = [r for r in outcomes if isinstance(r, Answer)]
    ok = [r for r in responses if r.status_code == 200]
    shed = [r for r in responses if r.status_code == 503]
    failed = len(outcomes) - len(ok) - len(shed)  # timeouts, resets, other statuses

    began = time.monotonic()  # recovery: until a request is answered as fast as before
    while True:
        asked = time.monotonic()
        recovered = client.post(routes[0][0], json=routes[0][1], timeout=RECOVERY_WAIT_S)
        if time.monotonic() - asked < 1.0 or time.monotonic() - began > RECOVERY_WAIT_S:
            break
    recovery_s = time.monotonic() - began
    drained(client)
    print(
        f"\ncapacity {capacity:.0f} req/s; offered {4 * capacity:.0f} req/s for {OVERLOAD_S} s "
        f"({len(outcomes)} requests): {len(ok)} answered, {len(shed)} shed (503, "
        f"{len(shed) / len(outcomes):.0%}), {failed} failed or timed out; RSS "
        f"{rss_before:.0f} -> {rss_after:.0f} MB; first answer after the load {recovery_s:.2f} s"
    )
    assert recovered.status_code == 200 and recovery_s < 2.0
    assert all(r.headers.get("retry-after") for r in shed), "a 503 without Retry-After"
    shed_paths = {r.path for r in shed}
    assert len(shed_paths) == len(routes), f"only {shed_paths} shed"  # every route sheds
    assert all(json.loads(r.body)["code"] == "overloaded" for r in shed[:50])
    counted = re.search(r"^clearsight_shed_requests_total (\S+)", client.get("/metrics").text, re.M)
    assert counted and float(counted[1]) >= len(shed), "sheds missing from /metrics"
    assert failed <= 0.05 * len(outcomes), {repr(r)[:80] for r in outcomes if r not in responses}
    # Goodput under the flood, 2 cores shared with the load generator: 11 % of capacity when
    # every refusal passed BentoML's middlewares (CI, 1,901 req/s); 50-107 % since they are
    # refused in front of them (floods of 1,853-2,834 req/s). A bound of 64 in flight starved
    # the admitted requests to 12 %.
    assert len(ok) >= capacity * OVERLOAD_S * MIN_GOODPUT, "shedding starved the requests it kept"
    assert rss_after < rss_before + 500, "memory grew with the queue"
    assert server.alive()
