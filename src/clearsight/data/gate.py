"""The gate in front of training: load the source, split, profile, check the contract.

Every entry point (CLI, Prefect flow, tests) goes through ``run_data_gate`` so the data that
reaches training is always the data that passed, and the frozen holdout is only ever written
from data that passed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from clearsight.config import Settings
from clearsight.data.contract import (
    ValidationReport,
    check_contract,
    load_reference,
    report_folder,
)
from clearsight.data.dataset import Dataset
from clearsight.data.profile import profile_splits
from clearsight.data.sources import load
from clearsight.data.splits import HoldoutStore, Splits, make_splits


@dataclass(frozen=True)
class GatedData:
    """Splits that passed the contract, with the profile and report that say so."""

    source: Dataset
    splits: Splits
    profile: pd.DataFrame
    report: ValidationReport


def run_data_gate(settings: Settings, *, freeze_holdout: bool = True) -> GatedData:
    """Load, split and validate; raises ``DataValidationError`` (report attached) on failure."""
    source = load(settings.data)
    store = HoldoutStore(settings.holdout_dir)
    splits = make_splits(source, settings.data, store)
    profile = profile_splits(splits)
    reference = load_reference(settings.reference_profile_path)
    report = check_contract(profile, settings.data, reference, report_folder(settings.reports_dir))
    report.raise_for_failures()
    if freeze_holdout and not splits.holdout_frozen:
        store.freeze(splits.holdout)
    return GatedData(source, splits, profile, report)
