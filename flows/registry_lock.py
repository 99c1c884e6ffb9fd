"""One retrain at a time moves the registry: a Prefect global concurrency limit of one slot.

``retrain`` (the nightly deployment, a manual run, or the subflow the incoming watcher starts)
holds the ``clearsight-registry`` slot while it evaluates and promotes its challenger and
builds the bento for a new champion. Two retrains finishing together would otherwise both
read the champion history, both append to it and both move ``champion`` and
``previous-champion``: the last writer wins and a promotion vanishes from the history.

Prefect skips a concurrency limit that does not exist (a warning, no lock at all), so the limit
is created here, idempotently, before every use (``ensure_registry_limit``): by the flow
itself, by ``make schedule`` at start-up, and by hand for ``prefect deploy`` setups
(``python -m flows.registry_lock``, or ``prefect gcl create clearsight-registry --limit 1``).
It works the same on the temporary server of ``make run``, Prefect's test harness and a real
server. The slot is a lease: if the process holding it dies, the server frees it when the
lease runs out (``LEASE_SECONDS``), so a crash never blocks promotions for good.

That needs the lease to outlive the server too. Prefect keeps leases in server memory by
default, while the database keeps counting the slot as taken; ``make run`` and
``make schedule`` start (and stop) their own servers, so a run killed while holding the slot
would block every later retrain. ``persist_leases`` makes the servers those commands start
keep leases on disk (``PREFECT_HOME/concurrency_leases``), where they expire after a restart.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress

REGISTRY_LIMIT = "clearsight-registry"
# How long to wait for another retrain's evaluate-and-promote and build (budgets 30 + 15 min);
# past it the run fails with a clear timeout instead of hanging until the flow's own timeout.
ACQUIRE_TIMEOUT_SECONDS = 3600.0
# Renewed every 3/4 of this while held; how long a dead holder keeps the slot.
LEASE_SECONDS = 300.0


LEASE_STORAGE_SETTING = "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"
FILE_LEASES = "prefect.server.concurrency.lease_storage.filesystem"


def persist_leases() -> None:
    """Prefect servers started from this process from now on keep concurrency leases on
    disk (unless the setting is given already). Call before the server starts."""
    os.environ.setdefault(LEASE_STORAGE_SETTING, FILE_LEASES)


def ensure_registry_limit() -> None:
    """Create the one-slot limit if missing; re-arm it if someone disabled or widened it.

    Safe to call from several runs at once: a lost creation race (409) means it exists.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            found = client.read_global_concurrency_limit_by_name(REGISTRY_LIMIT)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another run created it just now
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=REGISTRY_LIMIT, limit=1, active=True)
                )
            return
        if found.limit != 1 or not found.active:
            client.update_global_concurrency_limit(
                REGISTRY_LIMIT, GlobalConcurrencyLimitUpdate(limit=1, active=True)
            )


@contextmanager
def registry_slot(timeout_seconds: float = ACQUIRE_TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold the registry slot for the block; waits for another retrain to release it.

    ``strict``: a limit that vanished between ensuring and acquiring fails the run instead of
    running unlocked. A failed lease renewal (the API briefly unreachable) does not cancel the
    block: stopping half-way through moving aliases would be worse than the small chance that
    the lease runs out while another run waits.
    """
    from prefect.concurrency.sync import concurrency

    ensure_registry_limit()
    with concurrency(
        REGISTRY_LIMIT,
        occupy=1,
        timeout_seconds=timeout_seconds,
        lease_duration=LEASE_SECONDS,
        strict=True,
        raise_on_lease_renewal_failure=False,
    ):
        yield


if __name__ == "__main__":
    ensure_registry_limit()
    print(f"global concurrency limit '{REGISTRY_LIMIT}' (1 slot) is in place")
