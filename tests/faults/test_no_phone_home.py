"""Row 8 of "What survives what": nothing phones home, proved rather than configured.

``make run``, ``clearsight serve`` answering one prediction and ``make schedule`` for one
poll of the incoming-data watcher run (``phone_home.sh``) in a network namespace with only
loopback (``unshare -n``), under ``strace -f -e trace=connect``: every ``connect()`` any
process makes is recorded, and the record must show loopback and Unix sockets only. A DNS
lookup would show up too (a connect to the resolver). Needs root, ``unshare`` and ``strace``
(``make strace`` installs it on Debian); it skips with the reason otherwise, and fails
instead under ``CI=true`` (``skip_or_fail``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.faults.conftest import skip_or_fail

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("phone_home.sh")
FAMILY = re.compile(r"sa_family=(AF_\w+)")
INET = re.compile(r'inet_addr\("([^"]+)"\)')
INET6 = re.compile(r'inet_pton\(AF_INET6, "([^"]+)"')


def outbound(line: str) -> str | None:
    """The address of a connect() that leaves the machine, or None for a local one."""
    family = FAMILY.search(line)
    if family is None or family[1] in ("AF_UNIX", "AF_UNSPEC"):  # AF_UNSPEC: disconnects
        return None
    if family[1] == "AF_INET" and (addr := INET.search(line)):
        return None if addr[1].startswith("127.") else addr[1]
    if family[1] == "AF_INET6" and (addr := INET6.search(line)):
        local = addr[1] == "::1" or addr[1].startswith("::ffff:127.")
        return None if local else addr[1]
    return line.strip()


def test_outbound_parser() -> None:
    """The parser itself can fail: it flags real addresses and the resolver."""
    out = '12 connect(3, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("1.2.3.4")}'
    assert outbound(out) == "1.2.3.4"
    dns = '9 connect(5, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.0.0.53")}'
    assert outbound(dns) == "10.0.0.53"
    v6 = '7 connect(4, {sa_family=AF_INET6, sin6_port=htons(80), inet_pton(AF_INET6, "2a00::1"'
    assert outbound(v6) == "2a00::1"
    local = (
        '7 connect(4, {sa_family=AF_INET, sin_port=htons(4200), sin_addr=inet_addr("127.0.0.1")}'
    )
    assert outbound(local) is None
    assert outbound('3 connect(3, {sa_family=AF_UNIX, sun_path="/run/x"}, 110) = 0') is None


@pytest.mark.timeout(1800)  # three entry points end to end; ~4 min on an idle 2-core machine
def test_nothing_phones_home(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        skip_or_fail("a network namespace (unshare -n) needs root")
    for tool in ("unshare", "strace", "ip", "curl"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is not installed (make strace installs strace on Debian)")
    log = tmp_path / "connect.log"
    env = {
        **os.environ,
        "OUT_DIR": str(tmp_path),
        "UV_OFFLINE": "1",  # uv sync --locked from the warm cache, as a user offline would
        "CLEARSIGHT_DATA_DIR": str(tmp_path / "data"),
        "CLEARSIGHT_MLFLOW_DIR": str(tmp_path / "mlflow"),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "CLEARSIGHT_TRAIN__EPOCHS": "2",  # short but real: the whole flow, two epochs
        "CLEARSIGHT_PROMOTION__MIN_CLASS_RECALL": "0",  # so it bootstraps a champion to serve
        "CLEARSIGHT_EXPLAIN__PANEL_SIZE": "10",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
    }
    for name in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "CLEARSIGHT_SERVICE_URL"):
        env.pop(name, None)
    trace = f"strace -f -qq --seccomp-bpf -e trace=connect -o {log} bash {SCRIPT}"
    done = subprocess.run(
        ["unshare", "-n", "bash", "-c", f"ip link set lo up && {trace}"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if done.returncode != 0 and "unshare failed" in done.stderr:
        skip_or_fail(f"no network namespace here: {done.stderr.strip()}")
    logs = {p.name: p.read_text()[-2000:] for p in tmp_path.glob("*.log") if p.name != log.name}
    assert done.returncode == 0, (done.stdout, done.stderr[-2000:], logs)
    assert '"status":"ok"' in (tmp_path / "prediction.json").read_text().replace(" ", "")
    calls = [line for line in log.read_text().splitlines() if "connect(" in line]
    leaving = sorted({addr for line in calls if (addr := outbound(line))})
    print(f"\n{len(calls)} connect() calls recorded, {len(leaving)} leaving loopback")
    assert calls, "strace recorded nothing: the trace did not work"
    assert leaving == [], leaving
