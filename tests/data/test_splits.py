import numpy as np
import pytest

from clearsight.config import DataSettings
from clearsight.data import Dataset, DataSourceError, HoldoutStore, make_splits


@pytest.fixture
def dataset(digits) -> Dataset:
    return Dataset(*digits, origin="test digits")


def test_splits_are_stratified_disjoint_and_deterministic(dataset: Dataset, tmp_path) -> None:
    settings = DataSettings(holdout_fraction=0.2, validation_fraction=0.1)
    a = make_splits(dataset, settings, HoldoutStore(tmp_path / "a"))
    b = make_splits(dataset, settings, HoldoutStore(tmp_path / "b"))
    assert a.digests() == b.digests()
    assert [len(a.train), len(a.validation), len(a.holdout)] == [290, 30, 80]
    assert np.bincount(a.holdout.labels).tolist() == [8] * 10
    hashes = {name: set(ds.content_hashes()) for name, ds in a.items()}
    assert not hashes["train"] & hashes["holdout"]
    assert not hashes["validation"] & hashes["holdout"]
    assert not hashes["train"] & hashes["validation"]
    other = make_splits(dataset, DataSettings(seed=1), HoldoutStore(tmp_path / "c"))
    assert other.digests()["holdout"] != a.digests()["holdout"]


def test_frozen_holdout_is_reused_and_kept_out_of_training(dataset: Dataset, tmp_path) -> None:
    store = HoldoutStore(tmp_path)
    first = make_splits(dataset, DataSettings(), store)
    store.freeze(first.holdout)
    # New data arrives: the source grows, the holdout must not move.
    grown = Dataset(
        np.concatenate([dataset.images, 255 - dataset.images[:50]]),
        np.concatenate([dataset.labels, dataset.labels[:50]]),
        "grown",
    )
    second = make_splits(grown, DataSettings(), store)
    assert second.holdout_frozen
    assert second.holdout.digest == first.holdout.digest
    held = set(second.holdout.content_hashes())
    assert not held & set(second.train.content_hashes())
    assert len(second.train) + len(second.validation) == len(grown) - len(first.holdout)


def test_modified_frozen_holdout_is_refused(dataset: Dataset, tmp_path) -> None:
    store = HoldoutStore(tmp_path)
    store.freeze(make_splits(dataset, DataSettings(), store).holdout)
    with np.load(store.arrays) as npz:
        images, labels = npz["images"].copy(), npz["labels"]
    images[0, 0, 0] ^= 1
    np.savez_compressed(store.arrays, images=images, labels=labels)
    with pytest.raises(DataSourceError, match="frozen holdout was modified"):
        store.load()
