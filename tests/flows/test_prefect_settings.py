"""Prefect fixes its settings at import: the flows package must settle them before that.

A stop's CI failed because ``flows/retrain.py`` raised the temporary server's start-up timeout
*after* ``from prefect import ...``: the change was ignored, Prefect kept its 20 s, and a busy
2-core machine timed out starting the local API. A fresh interpreter shows what a flow really
runs with.
"""

import json
import os
import subprocess
import sys

PROBE = """
import json, flows
from prefect.settings import get_current_settings
s = get_current_settings()
print(json.dumps({"timeout": s.server.ephemeral.startup_timeout_seconds,
                  "analytics": s.server.analytics_enabled}))
"""
OURS = ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "PREFECT_SERVER_ANALYTICS_ENABLED")


def _settings(**extra: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k not in OURS} | extra
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_flows_give_the_local_server_time_and_send_no_analytics() -> None:
    assert _settings() == {"timeout": 120, "analytics": False}


def test_the_users_values_win() -> None:
    chosen = _settings(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="45")
    assert chosen["timeout"] == 45
