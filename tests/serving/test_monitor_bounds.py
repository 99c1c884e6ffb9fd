"""The out-of-distribution bounds a pinned bento falls back to follow the served task's
channels (``serving.monitoring.fallback_bounds``), without a server."""

from __future__ import annotations

import pytest

import serving.monitoring as service_monitoring
from clearsight.monitoring.bounds import Bounds
from clearsight.monitoring.requests import default_bounds
from clearsight.task import DIGITS, ImageTask

COLOUR = ImageTask(16, 16, 3, ("a", "b", "c"), digit_like=False)


def test_the_digits_fall_back_to_the_shipped_digit_bounds() -> None:
    assert service_monitoring.fallback_bounds(DIGITS).to_dict() == default_bounds().to_dict()


def test_the_tasks_channels_choose_the_default_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []

    def per_channel(channels: int = 1, *, task: ImageTask | None = None) -> Bounds:
        asked.append(channels)
        return default_bounds()

    monkeypatch.setattr(service_monitoring, "default_bounds", per_channel)
    service_monitoring.fallback_bounds(COLOUR)
    service_monitoring.fallback_bounds(DIGITS)
    assert asked == [3, 1]


def test_colour_bounds_are_the_per_channel_ones() -> None:
    bounds = service_monitoring.fallback_bounds(COLOUR)
    assert bounds.to_dict() == default_bounds(3, task=COLOUR).to_dict()
    assert not bounds.limits  # no shipped bounds for colour: they come with its reference
