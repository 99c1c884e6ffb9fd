"""Two file-system primitives every store here relies on: an exclusive lock across processes,
and a write that readers see whole or not at all.

Why one module: the incoming ledger, the data versions, feedback batches and the registry lock
all need exactly these, and a subtle difference between copies (a missing ``fsync``, a
temporary name a poller could mistake for a batch) is how data gets lost.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """``fcntl.flock`` on ``path`` (created if missing): one holder at a time across
    processes, and across threads too, since each call opens its own file description. The
    kernel drops the lock when its holder dies, so a killed process never leaves it taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def atomic_write(path: Path, write: Callable[[IO[bytes]], object], suffix: str = "") -> Path:
    """``write(handle)`` into a temporary file beside ``path``, synced, then renamed onto it.

    The temporary name starts with a dot (never mistaken for a batch, a chunk or a version,
    even when a crash leaves it behind); ``os.replace`` is atomic within one file system, so
    readers see the old file or the new one, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "wb", dir=path.parent, prefix=f".{path.stem}-", suffix=suffix, delete=False
    ) as tmp:
        try:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    os.replace(tmp.name, path)
    return path
