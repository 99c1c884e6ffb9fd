"""The data contract: real digits pass, and each kind of corruption fails by name."""

from collections.abc import Callable

import numpy as np
import pytest

from clearsight.config import Settings
from clearsight.data import Dataset, HoldoutStore, Splits, make_splits, profile_splits
from clearsight.data.contract import DataValidationError, check_contract, load_reference
from clearsight.data.gate import run_data_gate
from clearsight.task import DIGITS


def _check(settings: Settings, splits: Splits):
    reference = load_reference(settings.reference_profile_path)
    return check_contract(profile_splits(splits), settings.data, reference, task=DIGITS)


def _splits(settings: Settings, images: np.ndarray, labels: np.ndarray) -> Splits:
    store = HoldoutStore(settings.holdout_dir)
    return make_splits(Dataset(images, labels, "test"), settings.data, store)


def _failed(report) -> set[str]:
    return {f"{o.expectation}:{o.column}" for o in report.failures}


def test_real_digits_pass(settings: Settings, digits) -> None:
    report = _check(settings, _splits(settings, *digits))
    assert report.success, [o.summary() for o in report.failures]
    # 13 rules before datasets had tasks, + channels, + the digits' polarity rule
    assert len(report.outcomes) == 15 and len(report.contract_hash) == 64


def _pad_to_32(images, labels):
    return np.pad(images, ((0, 0), (2, 2), (2, 2))), labels


def _nan_pixels(images, labels):
    out = images.astype(np.float32)
    out[::50, 5, 5] = np.nan
    return out, labels


def _too_bright(images, labels):
    out = images.astype(np.float32)
    out[::40, 10, 10] = 300.0
    return out, labels


def _negative(images, labels):
    out = images.astype(np.float32)
    out[::40, 10, 10] = -4.0
    return out, labels


def _unknown_label(images, labels):
    out = labels.copy()
    out[::37] = 11
    return images, out


def _darker(images, labels):
    return (images * 0.5).astype(np.uint8), labels


def _imbalanced(images, labels):
    keep = (labels != 3) | (np.arange(len(labels)) % 10 == 0)
    return images[keep], labels[keep]


def _inverted(images, labels):
    return 255 - images, labels


CORRUPTIONS: dict[str, tuple[Callable, str]] = {
    "wrong shape": (_pad_to_32, "expect_column_values_to_be_in_set:height"),
    "NaN pixels": (_nan_pixels, "expect_column_values_to_be_between:nan_count"),
    "pixels above 255": (_too_bright, "expect_column_values_to_be_between:max"),
    "pixels below 0": (_negative, "expect_column_values_to_be_between:min"),
    "unknown label": (_unknown_label, "expect_column_values_to_be_in_set:label"),
    "drifted intensities": (_darker, "expect_column_mean_to_be_between:mean_intensity"),
    "inverted digits": (_inverted, "expect_column_mean_to_be_between:ink_fraction"),
    "dark on light": (_inverted, "expect_column_values_to_be_between:border_bright"),
    "class imbalance": (_imbalanced, "expect_column_values_to_be_between:class_share"),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corruption_fails_the_named_expectation(settings: Settings, digits, kind: str) -> None:
    corrupt, expected = CORRUPTIONS[kind]
    report = _check(settings, _splits(settings, *corrupt(*digits)))
    assert not report.success
    assert expected in _failed(report)


def test_duplicates_within_a_split_fail(settings: Settings, digits) -> None:
    splits = _splits(settings, *digits)
    train = splits.train
    images = train.images.copy()
    images[1] = images[0]
    dup = Splits(Dataset(images, train.labels, "dup"), splits.validation, splits.holdout, False)
    report = _check(settings, dup)
    assert _failed(report) == {"expect_column_values_to_be_unique:split_content_hash"}


def test_holdout_leaking_into_training_fails(settings: Settings, digits) -> None:
    splits = _splits(settings, *digits)
    train = splits.train
    images = train.images.copy()
    images[:3] = splits.holdout.images[:3]
    leaked = Splits(Dataset(images, train.labels, "leak"), splits.validation, splits.holdout, False)
    report = _check(settings, leaked)
    assert "expect_column_values_to_be_in_set:holdout_leak" in _failed(report)
    leak = next(o for o in report.failures if o.column == "holdout_leak")
    assert leak.observed.startswith("6 rows")  # 3 in train, 3 in holdout


def test_gate_passes_freezes_holdout_and_writes_reports(settings: Settings) -> None:
    gated = run_data_gate(settings)
    assert gated.report.success and not gated.splits.holdout_frozen
    assert gated.report.json_path.is_file()
    assert gated.report.docs_path.is_file()
    assert (gated.report.json_path.parent / "profile.csv").is_file()
    store = HoldoutStore(settings.holdout_dir)
    assert store.load().digest == gated.splits.holdout.digest
    again = run_data_gate(settings)
    assert again.splits.holdout_frozen
    assert again.splits.digests() == gated.splits.digests()


def test_failed_gate_raises_with_every_failure_and_freezes_nothing(
    settings: Settings, digits, tmp_path
) -> None:
    from tests.conftest import write_idx_pair

    images, labels = _nan_pixels(*_unknown_label(*digits))
    folder = write_idx_pair(tmp_path / "idx", images, labels)
    settings.data = settings.data.model_copy(update={"source": "idx", "path": folder})
    with pytest.raises(DataValidationError) as err:
        run_data_gate(settings)
    failed = _failed(err.value.report)
    assert {
        "expect_column_values_to_be_in_set:label",
        "expect_column_values_to_be_between:nan_count",
    } <= failed
    assert "label" in str(err.value) and "nan_count" in str(err.value)
    assert not HoldoutStore(settings.holdout_dir).exists()
    assert err.value.report.json_path.is_file()
