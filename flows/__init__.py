"""Prefect flows over the clearsight library: retrain, watch-incoming, monitor (thin adapters).

Prefect reads its settings once, when it is first imported, so what this package wants of them
is settled here, before any flow module imports Prefect (a later ``os.environ`` change is
silently ignored): importing ``clearsight`` switches the stack's telemetry off, and the
temporary local API server gets two minutes to start instead of Prefect's 20 s, which a busy
2-core machine can exceed. A user's own values win.
"""

import os

import clearsight  # noqa: F401  (switches telemetry off before Prefect reads its settings)

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
