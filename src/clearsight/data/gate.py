"""The gate in front of training: load the source, split, profile, check the contract.

Every entry point (CLI, Prefect flow, tests) goes through ``run_data_gate`` so the data that
reaches training is always the data that passed, and the frozen holdout is only ever written
from data that passed. The data is the newest data version of the configured source
(``clearsight.data.versions``: the source plus every accepted incoming batch), so a run
trains on, and names, exactly one version.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from clearsight.config import Settings
from clearsight.data.contract import (
    ValidationReport,
    check_contract,
    record_reference,
    reference_for,
    report_folder,
)
from clearsight.data.dataset import Dataset
from clearsight.data.profile import profile_splits
from clearsight.data.sources import expected_task, load
from clearsight.data.splits import HoldoutStore, Splits, make_splits
from clearsight.data.versions import DataVersion, VersionStore, newest
from clearsight.task import ImageTask


@dataclass(frozen=True)
class GatedData:
    """Splits that passed the contract, with the profile and report that say so."""

    source: Dataset
    splits: Splits
    profile: pd.DataFrame
    report: ValidationReport
    task: ImageTask  # the shape and classes the data passed as: what the model is built for
    data_version: DataVersion | None = None  # None only for a dry run on an unversioned source


def run_data_gate(settings: Settings, *, freeze_holdout: bool = True) -> GatedData:
    """Load the newest data version, split and validate; raises ``DataValidationError``
    (report attached) on failure. ``freeze_holdout=False`` (a dry check of a candidate
    source) neither freezes a holdout nor records a first data version."""
    base = load(settings.data)
    versioned = newest(settings, base, record=False)  # a base's root is recorded once it passed
    source = versioned.dataset if versioned else base
    assert settings.holdout_dir is not None and settings.reports_dir is not None  # resolved
    store = HoldoutStore(settings.holdout_dir)
    task = expected_task(settings.data, source)
    splits = make_splits(source, settings.data, store)
    profile = profile_splits(splits)
    reference = reference_for(settings, task)
    folder = report_folder(settings.reports_dir)
    report = check_contract(profile, settings.data, reference, folder, task=task)
    report.raise_for_failures()
    if freeze_holdout and not splits.holdout_frozen:
        store.freeze(splits.holdout)
    if freeze_holdout and reference is None:
        recorded = record_reference(settings, task, profile, source.origin)
        if recorded is not None:
            report.extra["notes"].append(f"reference profile recorded: {recorded}")
    version = versioned.version if versioned else None
    if version is None and freeze_holdout:
        version = VersionStore.of(settings).root(settings.data, base)
    return GatedData(source, splits, profile, report, task, version)
