"""Which data version the champion was trained on, and whether newer data exists.

A nightly retrain on the data the champion already saw can only tie it (and ties keep the
champion): ``data_freshness`` says whether retraining can help, by comparing the newest data
version of the configured source with the ``data_version`` tag of the champion's run.
"""

from __future__ import annotations

from dataclasses import dataclass

from clearsight.choices import CHAMPION
from clearsight.config import Settings
from clearsight.data.sources import load
from clearsight.data.versions import VersionStore
from clearsight.errors import RegistryError
from clearsight.tracking.registry import describe_version


@dataclass(frozen=True)
class DataFreshness:
    """The newest data version and the champion's (None: no champion, or one trained before
    data versions existed, or a source never trained on)."""

    newest: str | None
    champion: str | None
    champion_model_version: str | None

    @property
    def new_data(self) -> bool:
        return self.newest is None or self.champion is None or self.newest != self.champion

    def reason(self) -> str:
        if self.champion_model_version is None:
            return "no champion yet: training bootstraps one"
        if self.newest is None:
            return "the configured source has no data version yet: never trained on"
        if self.champion is None:
            return f"champion v{self.champion_model_version} names no data version"
        if self.newest == self.champion:
            return (
                f"champion v{self.champion_model_version} was trained on {self.champion}, "
                "the newest data version: no new data"
            )
        return (
            f"newest data version {self.newest} differs from {self.champion} of champion "
            f"v{self.champion_model_version}"
        )


def champion_data_version(settings: Settings) -> tuple[str | None, str | None]:
    """(champion's model version, the data version its run was trained on); Nones without
    a champion."""
    try:
        info = describe_version(settings, CHAMPION)
    except RegistryError:
        return None, None
    return info.version, info.run_tags.get("data_version")


def data_freshness(settings: Settings) -> DataFreshness:
    """Newest data version of ``settings.data`` against the champion's."""
    base = load(settings.data)
    newest = VersionStore.of(settings).latest_id(base.digest)
    model_version, data_version = champion_data_version(settings)
    return DataFreshness(newest, data_version, model_version)
