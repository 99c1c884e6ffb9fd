"""Ingest that stays linear: running statistics instead of re-profiling, an index instead of
walking the chain, and compaction of many small batch files into packs.

The statistics are checked against a full recompute, and the merged verdict they give against
Great Expectations run on the whole merged table (what ingest did before); compaction is
checked to keep every version's content and digest, also when it is killed midway.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clearsight.config import DataSettings, Settings
from clearsight.data.batch_files import BatchFiles
from clearsight.data.contract import check_contract, expectation_specs, load_reference
from clearsight.data.dataset import Dataset, concat
from clearsight.data.incoming import read_ledger
from clearsight.data.ingest import ingest_pending, running_profile
from clearsight.data.ingest_checks import Candidate, batch_frame, merged_check
from clearsight.data.profile import profile_dataset
from clearsight.data.running import RunningProfile
from clearsight.data.sources import load, load_embedded
from clearsight.data.version_index import VersionIndex
from clearsight.data.versions import BatchRef, DataVersion, VersionStore
from clearsight.task import DIGITS
from tests.conftest import REPO, stores_under

REFERENCE = load_reference(REPO / "data" / "contract" / "reference_profile.json")
SPECS = expectation_specs(DataSettings(), REFERENCE, task=DIGITS)


@pytest.fixture(scope="module")
def embedded() -> Dataset:
    return load_embedded()


def _random_batch(rng: np.random.Generator, pool: Dataset, n: int) -> Dataset:
    """Real digits, some broken on purpose: out-of-range values, NaN, a label 11, repeats."""
    rows = rng.choice(len(pool), n)
    images = pool.images[rows].astype(np.float64)
    labels = pool.labels[rows].copy()
    for kind, i in enumerate(rng.choice(n, max(1, n // 5), replace=False)):
        kind %= 4
        if kind == 0:
            images[i, 3, 3] = np.nan
        elif kind == 1:
            images[i] = 300.0
        elif kind == 2:
            labels[i] = 11
        else:
            images[i] = 0.0  # an empty image: intensity and ink out of the reference range
    return Dataset(images, labels, "random")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_running_statistics_equal_a_full_recompute(embedded: Dataset, seed: int) -> None:
    rng = np.random.default_rng(seed)
    batches = [_random_batch(rng, embedded, int(rng.integers(1, 40))) for _ in range(6)]
    running = RunningProfile.empty(SPECS)
    for batch in batches:
        running = running.add(profile_dataset(batch, "b"), SPECS)
    full = RunningProfile.of(profile_dataset(concat(batches, "all"), "all"), SPECS)
    assert running.n_rows == full.n_rows == sum(map(len, batches))
    assert running.label_counts == full.label_counts
    assert running.present == full.present and running.unexpected == full.unexpected
    assert any(running.unexpected.values()), "the broken images were counted"
    assert running.examples == full.examples
    assert running.counts == full.counts
    assert running.sums == pytest.approx(full.sums, rel=1e-12)
    assert RunningProfile.from_dict(running.to_dict()) == running


def _old_merged_frame(current: Dataset, batch: Dataset, held: set[str]) -> pd.DataFrame:
    """The merged table ingest used to validate: every row, duplicates and leaks keyed for
    the new rows only (the code this replaces, kept here as the reference)."""
    frame = profile_dataset(concat([current, batch], "merged"), "merged")
    is_new = np.arange(len(frame)) >= len(current)
    keys = frame["split"] + ":" + frame["content_hash"]
    new_hashes = set(frame.loc[is_new, "content_hash"])
    old_only = ~is_new & ~frame["content_hash"].isin(new_hashes)
    keys[old_only] = "held:" + frame.loc[old_only, "row"].astype(str)
    frame["split_content_hash"] = keys
    frame["holdout_leak"] = (is_new & frame["content_hash"].isin(held)).astype(np.int64)
    return frame


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_merged_verdict_equals_great_expectations_on_the_whole_table(
    embedded: Dataset, seed: int, tmp_path: Path
) -> None:
    rng = np.random.default_rng(seed)
    base = embedded.subset(rng.choice(len(embedded), 300, replace=False), "base")
    earlier = _random_batch(rng, embedded, 30)
    held = set(embedded.subset(np.arange(4000, 4100)).content_hashes())
    new = _random_batch(rng, embedded, 25)
    # Duplicates of the base and of the earlier batch, a holdout image, a class pushed up.
    extra = [base.subset(np.arange(2)), earlier.subset(np.arange(1)), embedded.subset([4000])]
    if seed == 2:
        extra.append(embedded.subset(np.flatnonzero(embedded.labels == 3)[:200]))
    new = concat([new, *extra], "new")
    current = concat([base, earlier], "current")

    index = VersionIndex(tmp_path, base.digest)
    index.build([(base.content_hashes(), 0), (earlier.content_hashes(), 2), (["ab" * 32], 7)])
    head = DataVersion(
        "dv0002",
        "x",
        len(current),
        {},
        "dv0001",
        None,
        None,
        "now",
        ("dv0002",),  # type: ignore[arg-type]
    )
    before = RunningProfile.of(profile_dataset(current, "merged"), SPECS)
    candidate = Candidate(
        Settings(home=REPO, data=DataSettings()),
        new,
        batch_frame(new, held),
        head,
        before,
        SPECS,
        REFERENCE,
        index,
        held,
    )
    ours = merged_check(candidate)
    theirs = check_contract(
        _old_merged_frame(current, new, held), DataSettings(), REFERENCE, task=DIGITS
    )
    assert ours.success == theirs.success and ours.n_rows == theirs.n_rows
    assert ours.contract_hash == theirs.contract_hash
    by_rule = {(o.expectation, o.column): o for o in theirs.outcomes}
    for outcome in ours.outcomes:
        expected = by_rule[(outcome.expectation, outcome.column)]
        assert (outcome.success, outcome.description) == (expected.success, expected.description)
        if outcome.column == "class_share":  # examples come from rows in another order
            assert outcome.observed.split(" e.g.")[0] == expected.observed.split(" e.g.")[0]
        else:
            assert outcome.observed == expected.observed, outcome.column
    failed = {o.column for o in ours.failures}
    assert {"split_content_hash", "holdout_leak", "label", "nan_count"} <= failed


# --- ingest end to end ---------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path, digits) -> Settings:
    images, labels = digits
    np.savez(tmp_path / "base.npz", x_train=images, y_train=labels)
    settings = stores_under(
        tmp_path, data=DataSettings(source="npz", path=tmp_path / "base.npz", compact_every=3)
    )
    assert settings.incoming_dir is not None
    settings.incoming_dir.mkdir(parents=True)
    return settings


def _fresh(embedded: Dataset, start: int, n: int) -> Dataset:
    """``n`` digits the ``digits`` base does not hold, classes round-robin."""
    rows = [np.flatnonzero(embedded.labels == i % 10)[40 + start + i // 10] for i in range(n)]
    return embedded.subset(np.asarray(rows))


def test_ingest_keeps_statistics_index_and_packs_consistent(
    settings: Settings, embedded: Dataset
) -> None:
    incoming = settings.incoming_dir
    assert incoming is not None
    store = VersionStore.of(settings)
    for k in range(7):
        batch = _fresh(embedded, 2 * k, 20)
        np.savez(incoming / f"b{k}.npz", x_train=batch.images, y_train=batch.labels)
        [outcome] = ingest_pending(settings).outcomes
        assert outcome.accepted, outcome.reason
    base = load(settings.data)
    head = store.manifest(store.latest_id(base.digest) or "")
    assert head.id == "dv0008" and head.n_images == 400 + 7 * 20
    names = sorted(p.name for p in store.batches.iterdir())
    assert names == ["dv0008.npz", "pack-L0-dv0002-dv0004.npz", "pack-L0-dv0005-dv0007.npz"]
    content = store.dataset(head, base)  # from two packs and a file, digest checked
    full = RunningProfile.of(profile_dataset(content, "merged"), SPECS)
    kept = running_profile(store, head, base, SPECS)
    assert kept.label_counts == full.label_counts and kept.unexpected == full.unexpected
    assert kept.sums == pytest.approx(full.sums, rel=1e-12)

    # A copy of an image of an earlier (now packed) batch is found through the index.
    again = _fresh(embedded, 2, 1)
    np.savez(incoming / "again.npz", x_train=again.images, y_train=again.labels)
    [outcome] = ingest_pending(settings).outcomes
    assert not outcome.accepted and "duplicate" in outcome.reason

    # A batch whose version was made but whose ledger entry was lost is not added twice.
    ledger = read_ledger(incoming)
    del ledger["b6.npz"]
    (incoming / ".ledger.json").write_text(json.dumps(ledger))
    [outcome] = ingest_pending(settings).outcomes
    assert outcome.accepted and outcome.version == "dv0008"
    assert outcome.reason == "already in this version"


# --- compaction ----------------------------------------------------------------------------


def _store_with(tmp_path: Path, embedded: Dataset, n_batches: int) -> tuple[VersionStore, Dataset]:
    """A store with ``n_batches`` small versions made directly (no contract: this is about
    files), every batch file still loose."""
    store = VersionStore(tmp_path / "versions")
    base = embedded.subset(np.arange(50), "base")
    version = store.root(DataSettings(), base)
    for k in range(n_batches):
        batch = embedded.subset(np.arange(100 + 3 * k, 103 + 3 * k), f"b{k}")
        version = store.add(version, batch, BatchRef(f"b{k}", str(k), 3))
    return store, base


def _contents(store: VersionStore, base: Dataset) -> dict[str, tuple[bytes, bytes]]:
    return {
        v.id: (d.images.tobytes(), d.labels.tobytes())
        for v in store.versions()
        for d in [store.dataset(v, base)]
    }


def test_compaction_keeps_every_version_and_merges_packs_by_level(
    tmp_path: Path, embedded: Dataset
) -> None:
    store, base = _store_with(tmp_path, embedded, 0)
    version, seen, written = store.versions()[-1], {}, []
    for k in range(9):  # as ingest does: a compaction check after every new version
        batch = embedded.subset(np.arange(100 + 3 * k, 103 + 3 * k), f"b{k}")
        version = store.add(version, batch, BatchRef(f"b{k}", str(k), 3))
        seen[version.id] = store.dataset(version, base).images.tobytes()
        done = store.compact(version, 3)
        written += done.written if done else []
    assert written == [
        "pack-L0-dv0002-dv0004.npz",
        "pack-L0-dv0005-dv0007.npz",
        "pack-L0-dv0008-dv0010.npz",
        "pack-L1-dv0002-dv0010.npz",
    ]
    assert [p.name for p in store.batches.iterdir()] == ["pack-L1-dv0002-dv0010.npz"]
    assert {v: store.dataset(store.manifest(v), base).images.tobytes() for v in seen} == seen
    assert store.compact(version, 3) is None, "nothing left to compact"


def test_a_compaction_killed_before_its_rename_leaves_the_old_files(
    tmp_path: Path, embedded: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, base = _store_with(tmp_path, embedded, 4)
    before = _contents(store, base)
    files_before = sorted(p.name for p in store.batches.iterdir())
    real_replace = os.replace

    def killed(src: str, dst: object) -> None:
        if Path(str(dst)).name.startswith("pack"):
            raise KeyboardInterrupt("killed before the rename")
        real_replace(src, dst)

    monkeypatch.setattr("clearsight.files.os.replace", killed)
    with pytest.raises(KeyboardInterrupt):
        store.compact(store.versions()[-1], 2)
    monkeypatch.undo()
    visible = sorted(p.name for p in store.batches.iterdir() if not p.name.startswith("."))
    assert visible == files_before and _contents(store, base) == before
    assert store.compact(store.versions()[-1], 2) is not None
    assert _contents(store, base) == before


def test_a_compaction_killed_after_its_rename_is_finished_by_the_next(
    tmp_path: Path, embedded: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, base = _store_with(tmp_path, embedded, 4)
    before = _contents(store, base)

    def killed(path: Path) -> str:
        raise KeyboardInterrupt("killed before removing the packed files")

    monkeypatch.setattr("clearsight.data.batch_files._remove", killed)
    with pytest.raises(KeyboardInterrupt):
        store.compact(store.versions()[-1], 4)
    monkeypatch.undo()
    names = sorted(p.name for p in store.batches.iterdir())
    assert "pack-L0-dv0002-dv0005.npz" in names and "dv0002.npz" in names  # both copies
    assert _contents(store, base) == before
    BatchFiles(store.batches).compact(list(store.versions()[-1].batch_ids), 4)
    assert sorted(p.name for p in store.batches.iterdir()) == ["pack-L0-dv0002-dv0005.npz"]
    assert _contents(store, base) == before
