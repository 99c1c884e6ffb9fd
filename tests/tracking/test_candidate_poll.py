"""The registry follower's poll: one alias read while the alias names the live version, the
full description (version, run, tags) only once it moved. The registry calls are fakes; the
follower and the holder are the real ones."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from clearsight.config import Settings
from clearsight.errors import RegistryError
from clearsight.inference.follow import REFUSED, UNCHANGED, UNREACHABLE, Backoff, Follower
from clearsight.inference.live import LiveModel, ModelHolder
from clearsight.tracking import candidate


class Registry:
    """The alias and a log of which registry calls a poll made."""

    def __init__(self) -> None:
        self.alias_names: str | None = "1"
        self.down = False
        self.calls: list[str] = []
        self.loads: list[str] = []

    def alias_version(self, client: object, name: str, alias: str) -> str | None:
        self.calls.append(f"alias {alias}")
        if self.down:
            raise ConnectionError("connection refused")
        return self.alias_names

    def describe_version(self, settings: Settings, ref: str) -> SimpleNamespace:
        self.calls.append(f"describe {ref}")
        return SimpleNamespace(version=self.alias_names, name="clearsight-cnn")

    def load_candidate(self, settings: Settings, info: SimpleNamespace, *args: object) -> None:
        """The download that follows a moved alias, refused here so no MLflow is reached."""
        self.loads.append(info.version)
        raise RegistryError(f"v{info.version} stops here")


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    fake = Registry()
    monkeypatch.setattr(candidate, "alias_version", fake.alias_version)
    monkeypatch.setattr(candidate, "describe_version", fake.describe_version)
    monkeypatch.setattr(candidate, "load_candidate", fake.load_candidate)
    return fake


def follower_of(settings: Settings) -> Follower:
    predictor = SimpleNamespace(provenance=SimpleNamespace(version="1"))
    holder = ModelHolder(LiveModel(predictor, forward=None), following="champion")  # type: ignore[arg-type]
    return candidate.registry_follower(
        settings,
        holder,
        alias="champion",
        make_predictor=lambda *args: None,  # type: ignore[arg-type,return-value]
        make_live=lambda predictor: LiveModel(predictor, forward=None),  # type: ignore[arg-type]
        on_swap=lambda old, new: None,
        on_refusal=lambda version, reason: None,
        backoff=Backoff(1.0, 4.0),
    )


def test_an_unchanged_alias_costs_one_registry_call(settings: Settings, registry: Registry) -> None:
    follower = follower_of(settings)
    for _ in range(3):
        assert follower.check().outcome == UNCHANGED
    assert registry.calls == ["alias champion"] * 3
    assert registry.loads == []


def test_a_moved_alias_is_described_and_loaded(settings: Settings, registry: Registry) -> None:
    follower = follower_of(settings)
    registry.alias_names = "2"
    assert follower.check().outcome == REFUSED  # the fake load refuses: past the description
    assert registry.calls == ["alias champion", "describe champion"]
    assert registry.loads == ["2"]


def test_an_outage_on_the_alias_read_is_retried_not_refused(
    settings: Settings, registry: Registry
) -> None:
    follower = follower_of(settings)
    registry.down = True
    result = follower.check()
    assert result.outcome == UNREACHABLE and result.retry_in == 1.0
    assert "transient" in result.detail
    assert registry.calls == ["alias champion"] and registry.loads == []
