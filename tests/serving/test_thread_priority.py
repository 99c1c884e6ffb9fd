"""The event loop first: other threads lowered, the loop's own priority untouched."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from serving.settings import ServerSettings
from serving.thread_priority import PER_THREAD, LoopFirst, lower_other_threads, lower_this_thread

pytestmark = pytest.mark.skipif(not PER_THREAD, reason="per-thread priorities are Linux's")


def niceness_in_thread(nice: int) -> tuple[bool, int, int]:
    """Lower a fresh thread; return whether it was set, its niceness, and the main thread's."""
    seen: list[tuple[bool, int]] = []

    def run() -> None:
        changed = lower_this_thread(nice)
        seen.append((changed, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return seen[0][0], seen[0][1], os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_lowering_one_thread_leaves_the_others_alone() -> None:
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    changed, nice, main = niceness_in_thread(before + 3)
    assert changed and nice == before + 3
    assert main == before


def test_zero_means_leave_priorities_alone() -> None:
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    changed, nice, _ = niceness_in_thread(0)
    assert not changed and nice == before
    assert lower_other_threads(0) == 0


SWEEP = """
import os, threading
from serving.thread_priority import lower_other_threads
base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
ready, done, ids = threading.Event(), threading.Event(), []
def idle():
    ids.append(threading.get_native_id()); ready.set(); done.wait(5)
worker = threading.Thread(target=idle); worker.start(); ready.wait(5)
first = lower_other_threads(base + 2)  # keeps the main thread (the event loop's)
second = lower_other_threads(base + 2)
print(first, second, os.getpriority(os.PRIO_PROCESS, ids[0]) - base,
      os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) - base)
done.set(); worker.join()
"""


def test_the_sweep_lowers_every_thread_but_the_main_one() -> None:
    """In a child process: a sweep cannot be undone without privilege."""
    out = subprocess.run(
        [sys.executable, "-c", SWEEP],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    ).stdout.split()
    first, second, worker, main = (int(v) for v in out)
    assert first >= 1 and worker == 2  # the idle thread was lowered
    assert second == 0  # already low: nothing to change
    assert main == 0  # the main thread kept its priority


KEEPER = """
import os, threading, time
from serving.thread_priority import LoopFirst
base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
keeper = LoopFirst(base + 3, every_s=0.05)
started = keeper.start()
ready, done, ids = threading.Event(), threading.Event(), []
def idle():  # started after the first sweep, from the main thread: it inherits its priority
    ids.append(threading.get_native_id()); ready.set(); done.wait(5)
worker = threading.Thread(target=idle); worker.start(); ready.wait(5)
inherited = os.getpriority(os.PRIO_PROCESS, ids[0]) - base
deadline = time.monotonic() + 5
while os.getpriority(os.PRIO_PROCESS, ids[0]) == base and time.monotonic() < deadline:
    time.sleep(0.01)
print(int(started), inherited, os.getpriority(os.PRIO_PROCESS, ids[0]) - base,
      os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) - base, keeper.lowered)
keeper.stop(); done.set(); worker.join()
"""


def test_threads_started_later_are_lowered_too() -> None:
    """The keeper's own thread is swept at once; a thread started afterwards, which inherits
    the main thread's priority, is lowered by a later sweep; the main thread never is."""
    out = subprocess.run(
        [sys.executable, "-c", KEEPER],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    ).stdout.split()
    started, inherited, later, main, lowered = (int(v) for v in out)
    assert started == 1
    assert inherited == 0  # born at the main thread's priority
    assert later == 3  # then lowered by the keeper
    assert main == 0
    assert lowered >= 2  # the keeper's own thread and the late one


def test_the_keeper_does_nothing_when_off() -> None:
    keeper = LoopFirst(0)
    assert not keeper.start()
    keeper.stop()


def test_the_setting_is_bounded_and_on_by_default() -> None:
    assert ServerSettings().background_nice == 10
    assert ServerSettings(background_nice=0).background_nice == 0
    with pytest.raises(ValueError):
        ServerSettings(background_nice=20)
