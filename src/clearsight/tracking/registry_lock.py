"""One operator at a time on the registry's aliases, across processes.

Why: promoting reads the champion, scores both models (seconds) and then moves aliases and the
champion-history tag; a rollback reads the history and writes it back. Two of these racing
(two operators, or an operator and a flow) would each write a history computed from a stale
read: a rollback or a promotion silently lost, or ``champion`` and the history disagreeing.
The Prefect flows already hold the ``clearsight-registry`` slot (``flows/registry_lock.py``),
but a ``clearsight promote`` typed in a shell knows nothing of Prefect.

For a local SQLite store the lock is an exclusive ``fcntl.flock`` on ``registry.lock`` beside
the database: every process on the machine that uses that store takes the same lock, and the
kernel releases it when a holder dies (a killed operator never blocks the next one). A remote
tracking server (``http(s)://``, a database URI) has no shared file: there the lock is
``CLEARSIGHT_REGISTRY_LOCK`` when set (a path on a file system every operator shares), and
otherwise nothing, which the README documents (move aliases through the flows, whose Prefect
slot serialises them, or from one place).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clearsight.config import Settings
from clearsight.files import exclusive_lock
from clearsight.tracking.store import tracking_uri

LOCK_FILE = "registry.lock"


def lock_path(settings: Settings) -> Path | None:
    """The lock file for this store, or None where no file is shared by its operators."""
    if settings.registry_lock is not None:
        return settings.registry_lock
    uri = tracking_uri(settings)
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent / LOCK_FILE
    return None


@contextmanager
def registry_lock(settings: Settings) -> Iterator[None]:
    """Hold the store's registry lock (blocking) for the block: read-decide-write of aliases.

    Each call opens its own file description, so threads of one process exclude each other
    too. Not re-entrant: take it once, around the whole read-modify-write.
    """
    path = lock_path(settings)
    if path is None:
        yield
        return
    with exclusive_lock(path):
        yield
