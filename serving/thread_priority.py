"""The event loop first: every other thread of the service runs at a lower CPU priority.

One worker answers every request on one event-loop thread (the main thread, where uvicorn
runs); the model's forward pass (the batcher's thread and TensorFlow's own ``tf_Compute``
pool), the traffic log, the answer ledger's checkpoints and the drift-score refresher run on
other threads of the same process. On a busy core the kernel shares time fairly between
runnable threads, so while a batch computes the loop ran at about half speed and requests
that arrived meanwhile queued behind it: the predict tail at 50 % load was made of such
clusters (a 1 ms watchdog caught the loop runnable but stalled 8-15 ms inside microsecond
numpy calls while only model threads ran; docs/benchmarks.md).

With the other threads niced the loop runs whenever it has work and the model takes the rest
of the core. Threads come and go after start-up (the ledger's checkpoint thread starts on the
first answer, AnyIO and TensorFlow start workers on demand, and a thread inherits the
priority of the thread that starts it, often the loop's), so one sweep is not enough: a
daemon thread repeats it every second, which costs ~0.1 ms per sweep. Lowering a thread's
priority needs no privilege; on Linux ``setpriority`` with a thread id changes that thread
only. Elsewhere it would change the whole process, so nothing is done there.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

logger = logging.getLogger("clearsight.serving")

PER_THREAD = sys.platform.startswith("linux")
SWEEP_SECONDS = 1.0


def lower_this_thread(nice: int) -> bool:
    """Give the calling thread niceness ``nice`` (0 = leave it); True when it was set."""
    if nice <= 0 or not PER_THREAD:
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError as err:  # a sandbox that forbids it: the service runs as before
        logger.warning("cannot lower a thread's priority: %s", err)
        return False
    return True


def lower_other_threads(nice: int, keep: int | None = None) -> int:
    """Niceness ``nice`` for every thread of this process except ``keep`` (a native thread id,
    by default the main thread's, which runs the event loop): also the threads a framework
    started itself, such as TensorFlow's. Returns how many threads were changed."""
    if nice <= 0 or not PER_THREAD:
        return 0
    keep = threading.main_thread().native_id if keep is None else keep
    changed = 0
    for entry in os.listdir("/proc/self/task"):
        tid = int(entry)
        if tid == keep:
            continue
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
                changed += 1
        except OSError:  # the thread ended meanwhile, or a sandbox forbids it
            continue
    return changed


class LoopFirst:
    """Keeps every thread but ``keep`` (default: the main thread) at niceness ``nice``: one
    sweep at once, then one every ``every_s`` seconds on a daemon thread, until ``stop()``."""

    def __init__(self, nice: int, keep: int | None = None, every_s: float = SWEEP_SECONDS):
        self.nice = nice
        self.keep = threading.main_thread().native_id if keep is None else keep
        self.every_s = every_s
        self.lowered = 0  # threads changed so far (a thread lowered once is counted once)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Sweep now and keep sweeping; False (and nothing started) when it cannot apply."""
        if self.nice <= 0 or not PER_THREAD or self._thread is not None:
            return False
        self.lowered += lower_other_threads(self.nice, self.keep)
        self._thread = threading.Thread(target=self._run, name="clearsight-loop-first", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.lowered += lower_other_threads(self.nice, self.keep)
