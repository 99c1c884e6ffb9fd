"""A training run never stays RUNNING forever, whichever way its process ends.

MLflow ends a run when the ``with mlflow.start_run()`` block is left, so an exception (and
``run.discarded_on_failure`` around it) covers every failure Python sees. Two deaths it does
not see:

- **SIGTERM** (``kill``, a container stop, a CI timeout): Python's default is to die at once,
  with no ``finally``. ``terminate_gracefully`` turns it into a ``Terminated`` exception in
  the main thread, so the run ends and its version is discarded like any other failure. Inside
  a Prefect flow, Prefect's own handler is already installed (it raises its
  ``TerminationSignal`` and marks the flow run crashed): it is left in place, and the
  cleanup sees that exception instead.
- **SIGKILL** (the OOM killer, ``kill -9``, a lost machine): nothing runs in the process. Each
  run is tagged with its owner (host, pid and the process's start time), and the next
  training run on the same host (``reap_orphaned_runs``) marks every RUNNING run whose owner
  process is gone as KILLED and deletes any version registered from it. Runs of other hosts
  are left alone: their processes cannot be checked from here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import mlflow

from clearsight.errors import Terminated

HOST_TAG = "clearsight.host"
PID_TAG = "clearsight.pid"
STARTED_TAG = "clearsight.process_started"  # guards against a reused pid
ENDED_TAG = "clearsight.ended"


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextlib.contextmanager
def terminate_gracefully() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` for the block, where nobody else handles SIGTERM.

    Only in the main thread (Python delivers signals there) and only over the default
    disposition: a handler someone installed (Prefect's flow engine, a server) is kept.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def process_started(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux ``/proc``), "" elsewhere: a
    pid that was reused by a newer process does not match the tag."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def owner_tags() -> dict[str, str]:
    """Tags that say which process owns a run, so a later process can tell it died."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), STARTED_TAG: process_started(pid)}


def owner_alive(tags: dict[str, str]) -> bool:
    """Whether the process named by a run's owner tags still runs (on this host)."""
    try:
        pid = int(tags[PID_TAG])
    except (KeyError, ValueError):
        return True  # not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    started = tags.get(STARTED_TAG, "")
    return not started or process_started(pid) in ("", started)


def reap_orphaned_runs(experiment_id: str, registered_name: str | None) -> list[str]:
    """Mark RUNNING runs of this host whose process is gone as KILLED, and delete the
    versions registered from them; returns their ids. Best effort: a store that cannot be
    searched is left for the next run."""
    from clearsight.tracking.run import discard_run

    host = socket.gethostname().replace("'", "")
    query = f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
    try:
        runs = mlflow.search_runs([experiment_id], filter_string=query, output_format="list")
    except Exception:  # reaping must never fail the run that does it
        return []
    reaped = []
    for run in runs:
        if run.info.run_id and not owner_alive(run.data.tags):
            with contextlib.suppress(Exception):
                mlflow.MlflowClient().set_tag(
                    run.info.run_id,
                    ENDED_TAG,
                    "killed: its process was gone (found by a later run)",
                )
            discard_run(run.info.run_id, registered_name, status="KILLED")
            reaped.append(run.info.run_id)
    return reaped
