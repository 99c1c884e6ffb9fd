"""Versioned training data: incoming batches of any size accumulate into data versions, bad
ones go to quarantine with their report, and a crash never leaves a half-made version.

Real files, the real Great Expectations contract and the real ledger; no Prefect (the flows
that call this are tested in tests/flows/test_flows.py and tests/serving/test_feedback.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clearsight.config import DataSettings, Settings
from clearsight.data.dataset import Dataset, concat
from clearsight.data.feedback import write_feedback_batch
from clearsight.data.incoming import read_ledger
from clearsight.data.ingest import ingest_pending
from clearsight.data.sources import load, load_embedded
from clearsight.data.splits import HoldoutStore, make_splits
from clearsight.data.versions import DataVersion, VersionStore, chain_digest
from clearsight.errors import DataSourceError
from tests.conftest import stores_under, write_idx_pair

CLEARSIGHT = str(Path(sys.executable).parent / "clearsight")


@pytest.fixture(scope="module")
def fresh() -> tuple[np.ndarray, np.ndarray]:
    """Real digits that are not in the ``digits`` base (the embedded set's 41st-60th per
    class), uint8, 20 per class."""
    full = load_embedded()
    index = np.concatenate([np.flatnonzero(full.labels == c)[40:60] for c in range(10)])
    return full.images[index].copy(), full.labels[index].copy()


@pytest.fixture
def settings(tmp_path: Path, digits) -> Settings:
    """Stores under tmp; the base is the 400-digit ``digits`` set as an npz, its holdout
    frozen (as the first training run would have) without running a whole gate."""
    images, labels = digits
    base_file = tmp_path / "base.npz"
    np.savez(base_file, x_train=images, y_train=labels)
    settings = stores_under(tmp_path, data=DataSettings(source="npz", path=base_file))
    base = load(settings.data)
    store = HoldoutStore(settings.holdout_dir)
    store.freeze(make_splits(base, settings.data, store).holdout)
    assert settings.incoming_dir is not None
    settings.incoming_dir.mkdir(parents=True)
    return settings


def _npz(folder: Path, name: str, images: np.ndarray, labels: np.ndarray) -> Path:
    path = folder / name
    np.savez(path, x_train=images, y_train=labels)
    return path


def _png_tree(folder: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / str(label) / f"{i}.png")
    return folder


def _holdout(settings: Settings) -> Dataset:
    return HoldoutStore(settings.holdout_dir).load()


def test_batches_of_any_size_and_form_accumulate_into_versions(
    settings: Settings, fresh, tmp_path: Path
) -> None:
    images, labels = fresh
    incoming = settings.incoming_dir
    assert incoming is not None
    base = load(settings.data)
    _npz(incoming, "one.npz", images[:1], labels[:1])  # a single labelled image
    first = ingest_pending(settings)
    assert [o.accepted for o in first.outcomes] == [True]
    assert (first.before, first.after) == ("dv0001", "dv0002")  # dv0001: the base alone
    write_idx_pair(incoming / "idx-batch", images[1::2], labels[1::2])  # 100 images, IDX
    _png_tree(incoming / "png-batch", images[2::4], labels[2::4])  # 50 images, PNG tree
    second = ingest_pending(settings)
    assert [(o.batch, o.version) for o in second.outcomes] == [
        ("idx-batch", "dv0003"),
        ("png-batch", "dv0004"),
    ]
    assert second.changed and second.after == "dv0004"

    store = VersionStore.of(settings)
    versions = {v.id: v for v in store.versions()}
    assert list(versions) == ["dv0001", "dv0002", "dv0003", "dv0004"]
    parents = [versions[v].parent for v in versions]
    assert parents == [None, "dv0001", "dv0002", "dv0003"]
    expected, merged = base.digest, base
    for vid, rows in (("dv0002", slice(0, 1)), ("dv0003", slice(1, None, 2))):
        # Each version's digest chains its parent's with its batch's: it names the content.
        expected = chain_digest(expected, Dataset(images[rows], labels[rows], "x"))
        merged = concat([merged, Dataset(images[rows], labels[rows], "x")], "x")
        assert versions[vid].digest == expected
        assert store.dataset(versions[vid], base).digest == merged.digest
    assert versions["dv0001"].digest == base.digest == versions["dv0004"].base.digest
    last = versions["dv0004"]
    assert last.n_images == 400 + 1 + 100 + 50
    counts = np.bincount(
        np.concatenate([base.labels, labels[:1], labels[1::2], labels[2::4]]), minlength=10
    )
    assert last.class_counts == {str(c): int(n) for c, n in enumerate(counts)}
    assert last.batch is not None and last.batch.name == "png-batch"
    assert last.batch.n_images == 50 and last.batch_ids == ("dv0002", "dv0003", "dv0004")
    ledger = read_ledger(incoming)
    assert ledger["idx-batch"]["outcome"] == "accepted: dv0003"

    # The incoming folder cleaned: every version still rebuilds, digest checked.
    shutil.rmtree(incoming)
    for version in versions.values():
        assert len(store.dataset(version, base)) == version.n_images  # digest checked inside
    # A tampered stored batch is named, not trained on.
    np.savez(store.batches / "dv0003.npz", images=images[:3], labels=labels[:3])
    with pytest.raises(DataSourceError, match=r"dv0004: rebuilt content.*modified"):
        store.dataset(last, base)


def test_the_gate_trains_on_the_newest_version_and_keeps_the_holdout(
    settings: Settings, fresh
) -> None:
    from clearsight.data.gate import run_data_gate

    images, labels = fresh
    holdout_before = _holdout(settings).digest
    _npz(settings.incoming_dir, "batch.npz", images, labels)
    assert ingest_pending(settings).after == "dv0002"
    gated = run_data_gate(settings)
    assert gated.data_version is not None and gated.data_version.id == "dv0002"
    assert gated.splits.holdout.digest == holdout_before, "the holdout never moves"
    assert len(gated.splits.train) + len(gated.splits.validation) == 400 - 80 + 200
    assert "dv0002" in gated.source.origin


def _quarantined(settings: Settings, name: str) -> dict:
    folder = settings.quarantine_dir
    assert folder is not None and (folder / name).exists(), "the batch is moved to quarantine"
    assert (folder / f"{name}.report.md").read_text().startswith(f"# Batch {name} quarantined")
    return json.loads((folder / f"{name}.report.json").read_text())


def test_a_batch_holding_a_holdout_image_is_quarantined_with_its_report(
    settings: Settings, fresh
) -> None:
    images, labels = fresh
    holdout = _holdout(settings)
    leaky = np.concatenate([images[:5], holdout.images[:1]])
    _npz(settings.incoming_dir, "leaky.npz", leaky, np.append(labels[:5], holdout.labels[0]))
    result = ingest_pending(settings)
    [outcome] = result.outcomes
    assert not outcome.accepted and not result.changed
    assert "holdout" in outcome.reason
    report = _quarantined(settings, "leaky.npz")
    assert report["passed"] is False and "holdout" in report["reason"]
    failed = [o["column"] for o in report["own"]["outcomes"] if not o["success"]]
    assert failed == ["holdout_leak"]
    assert not (settings.incoming_dir / "leaky.npz").exists()
    assert "leaky.npz" not in read_ledger(settings.incoming_dir), "moving it back retries it"
    assert [v.id for v in VersionStore.of(settings).versions()] == ["dv0001"]


def test_broken_images_and_unreadable_batches_are_quarantined(settings: Settings, fresh) -> None:
    images, labels = fresh
    nan = images[:3].astype(np.float32)
    nan[1, 3, 3] = np.nan
    _npz(settings.incoming_dir, "nan.npz", nan, labels[:3])
    tree = _png_tree(settings.incoming_dir / "pngs", images[:2], labels[:2])
    (tree / "0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = ingest_pending(settings)
    assert {o.batch: o.accepted for o in result.outcomes} == {"nan.npz": False, "pngs": False}
    assert "NaN" in _quarantined(settings, "nan.npz")["reason"]
    assert "unreadable" in _quarantined(settings, "pngs")["reason"]
    assert result.after == result.before == "dv0001"


def test_a_batch_that_unbalances_the_merged_set_is_refused_after_merging(
    settings: Settings,
) -> None:
    full = load_embedded()
    threes = np.flatnonzero(full.labels == 3)[40:240]  # 200 new images, all of class 3
    _npz(settings.incoming_dir, "threes.npz", full.images[threes], full.labels[threes])
    [outcome] = ingest_pending(settings).outcomes
    assert not outcome.accepted and "merged" in outcome.reason
    report = _quarantined(settings, "threes.npz")
    assert report["own"]["success"] is True, "on its own, one class is fine"
    failed = {o["column"] for o in report["merged"]["outcomes"] if not o["success"]}
    assert "class_share" in failed


def test_a_duplicate_of_a_training_image_is_refused(settings: Settings, digits) -> None:
    images, labels = digits
    holdout = set(_holdout(settings).content_hashes())
    train_row = next(
        i for i, h in enumerate(Dataset(images, labels, "x").content_hashes()) if h not in holdout
    )
    _npz(settings.incoming_dir, "again.npz", images[train_row : train_row + 1], labels[:1])
    [outcome] = ingest_pending(settings).outcomes
    assert not outcome.accepted and "duplicate" in outcome.reason


def test_a_crash_between_arrays_and_manifest_leaves_the_previous_version_newest(
    settings: Settings, fresh, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = fresh
    _npz(settings.incoming_dir, "first.npz", images[:10], labels[:10])
    assert ingest_pending(settings).after == "dv0002"
    _npz(settings.incoming_dir, "second.npz", images[10:20], labels[10:20])

    def killed(self: VersionStore, version) -> None:
        raise OSError("killed between the arrays and the manifest")

    monkeypatch.setattr(VersionStore, "_write_manifest", killed)
    with pytest.raises(OSError, match="killed"):
        ingest_pending(settings)
    store = VersionStore.of(settings)
    assert (store.batches / "dv0003.npz").is_file(), "the arrays were written"
    assert not (store.manifests / "dv0003.json").exists()
    base = load(settings.data)
    assert store.latest_id(base.digest) == "dv0002", "no half-merge: the old version is newest"
    assert [v.id for v in store.versions()] == ["dv0001", "dv0002"]
    assert "second.npz" not in read_ledger(settings.incoming_dir), "the claim was released"
    monkeypatch.undo()
    [outcome] = ingest_pending(settings).outcomes  # the next poll takes it again
    assert outcome.accepted and outcome.version == "dv0004", "an orphan's id is never reused"
    assert store.manifest("dv0004").parent == "dv0002"


def test_feedback_batches_are_written_whole_and_ingested(settings: Settings, fresh) -> None:
    images, labels = fresh
    folder = settings.incoming_dir
    assert folder is not None
    written = write_feedback_batch(folder, images[:2], labels[:2], ["req-1", None])
    assert written.name.startswith("feedback-") and written.count == 2
    assert [p.name for p in folder.iterdir()] == [written.name], "no temporary file left"
    with np.load(written.path) as npz:
        assert list(npz["request_id"]) == ["req-1", ""]
    with pytest.raises(DataSourceError, match="label"):
        write_feedback_batch(folder, images[:1], [10])
    [outcome] = ingest_pending(settings).outcomes
    assert outcome.accepted and outcome.batch == written.name


def test_cli_lists_data_versions_as_json(settings: Settings, fresh, tmp_path: Path) -> None:
    images, labels = fresh
    _npz(settings.incoming_dir, "b.npz", images[:4], labels[:4])
    ingest_pending(settings)
    env = os.environ | {"CLEARSIGHT_DATA_DIR": str(settings.data_dir), "COLUMNS": "250"}
    listed = subprocess.run(
        [CLEARSIGHT, "data", "versions", "--json"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["parent"], r["newest"]) for r in rows] == [
        ("dv0001", None, False),
        ("dv0002", "dv0001", True),
    ]
    assert rows[1]["batch"]["name"] == "b.npz" and rows[1]["n_images"] == 404
    table = subprocess.run(
        [CLEARSIGHT, "data", "versions"], env=env, capture_output=True, text=True
    )
    assert table.returncode == 0 and "dv0002 (newest)" in table.stdout and "b.npz" in table.stdout


def test_per_class_counts_follow_the_tasks_classes_not_ten_digits() -> None:
    """``data versions`` lists every class of the task: 12 word-named classes, zeros kept."""
    names = tuple(f"part-{c:02d}" for c in range(12))
    version = DataVersion.from_dict(
        {
            "id": "dv0001",
            "digest": "0" * 64,
            "n_images": 7,
            "class_counts": {"0": 3, "11": 4},
            "parent": None,
            "batch": None,
            "base": {"source": "folder", "path": "/parts", "digest": "0" * 64, "n_images": 7},
            "created_at": "2026-12-05T00:00:00+00:00",
            "class_names": list(names),
        }
    )
    per_class = version.per_class()
    assert [name for name, _ in per_class] == list(names)
    assert per_class[0] == ("part-00", 3) and per_class[11] == ("part-11", 4)
    assert sum(n for _, n in per_class) == 7
    legacy = DataVersion.from_dict(version.to_dict() | {"class_names": None})
    assert [name for name, _ in legacy.per_class()] == [str(d) for d in range(10)]
