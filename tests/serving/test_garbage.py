"""The service's garbage-collector settings: frozen after warm-up, larger young rounds."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from serving.garbage import YOUNG_THRESHOLD, settle_after_warm_up
from serving.settings import ServerSettings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_settling_freezes_what_is_alive_and_sets_only_the_young_threshold() -> None:
    _, middle, old = gc.get_threshold()
    survivor = [object() for _ in range(10)]  # a container alive at warm-up
    settle_after_warm_up(12_345)
    assert gc.get_threshold() == (12_345, middle, old)
    assert gc.get_freeze_count() > 0
    assert not any(survivor is o for o in gc.get_objects())  # frozen: no collection walks it


def test_the_default_is_larger_than_pythons_and_tiny_rounds_are_refused() -> None:
    assert ServerSettings().gc_young_threshold == YOUNG_THRESHOLD > 700
    assert ServerSettings(gc_young_threshold=700).gc_young_threshold == 700
    with pytest.raises(ValidationError):
        ServerSettings(gc_young_threshold=10)


def test_the_benchmark_offers_the_same_switch_to_peer_processes() -> None:
    """benchmarks/peers/gc_rounds/sitecustomize.py applies the threshold in any interpreter."""
    env = os.environ | {
        "PYTHONPATH": str(REPO / "benchmarks" / "peers" / "gc_rounds"),
        "PEER_GC_YOUNG_THRESHOLD": "4321",
    }
    code = "import gc; print(gc.get_threshold()[0])"
    shown = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip() == "4321"
    env.pop("PEER_GC_YOUNG_THRESHOLD")  # unset: Python's own threshold stays
    shown = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip() != "4321"
