"""The folder source for datasets in the shapes users bring: class folders named by words,
small grey images, colour images, mixed sizes; each refusal one line; a frozen holdout that
refuses another dataset; and the contract derived from the data's task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clearsight.config import DataSettings, Settings
from clearsight.data.class_folders import DIGIT_WORDS, SHAPES, colour_shapes, write_class_folders
from clearsight.data.contract import check_contract, expectation_specs, reference_path
from clearsight.data.dataset import Dataset
from clearsight.data.feedback import write_feedback_batch
from clearsight.data.folder import load_class_folders, sort_class_names
from clearsight.data.gate import run_data_gate
from clearsight.data.profile import profile_splits
from clearsight.data.sources import digit_rules_on, expected_task, load
from clearsight.data.splits import HoldoutStore, make_splits
from clearsight.data.versions import VersionStore
from clearsight.errors import DataSourceError
from clearsight.task import DIGITS, ImageTask


def _folder_settings(root: Path, **values: object) -> DataSettings:
    return DataSettings.model_validate({"source": "folder", "path": root} | values)


@pytest.fixture(scope="module")
def shapes() -> Dataset:
    return colour_shapes(20, size=32, seed=3)


def test_word_named_class_folders(tmp_path: Path, digits) -> None:
    images, labels = digits
    write_class_folders(Dataset(images, labels, "digits"), tmp_path, DIGIT_WORDS)
    ds = load(_folder_settings(tmp_path))
    assert ds.class_names == tuple(sorted(DIGIT_WORDS))  # Keras' order: sorted names
    assert ds.images.shape == (400, 28, 28) and ds.images.dtype == np.uint8
    three = ds.class_names.index("three") if ds.class_names else -1
    np.testing.assert_array_equal(np.sort(ds.images[ds.labels == three], axis=0),
                                  np.sort(images[labels == 3], axis=0))  # fmt: skip
    task = expected_task(_folder_settings(tmp_path), ds)
    assert task == ImageTask(28, 28, 1, tuple(sorted(DIGIT_WORDS)), digit_like=False)


def test_integer_names_sort_numerically() -> None:
    assert sort_class_names(["10", "2", "1"]) == ["1", "2", "10"]
    assert sort_class_names(["b", "10", "a"]) == ["10", "a", "b"]


def test_small_grey_images_keep_their_size(tmp_path: Path, digits) -> None:
    images, labels = digits
    write_class_folders(Dataset(images, labels, "digits"), tmp_path, DIGIT_WORDS, size=8)
    ds = load(_folder_settings(tmp_path))
    assert ds.images.shape == (400, 8, 8)
    assert expected_task(_folder_settings(tmp_path), ds).input_shape == (8, 8, 1)


def test_colour_images(tmp_path: Path, shapes: Dataset) -> None:
    write_class_folders(shapes, tmp_path)
    ds = load(_folder_settings(tmp_path))
    assert ds.images.shape == (60, 32, 32, 3) and ds.class_names == SHAPES
    assert ds.origin == f"folder: {tmp_path}"  # nothing resized or converted
    order = np.lexsort(shapes.images.reshape(60, -1).T)
    mine = np.lexsort(ds.images.reshape(60, -1).T)
    np.testing.assert_array_equal(ds.images[mine], shapes.images[order])  # PNG is lossless
    task = expected_task(_folder_settings(tmp_path), ds)
    assert task.input_shape == (32, 32, 3) and not task.digit_like


def test_mixed_sizes_and_modes_take_the_most_common(tmp_path: Path, shapes: Dataset) -> None:
    write_class_folders(shapes, tmp_path)
    odd = tmp_path / "circle" / "odd.jpg"
    Image.new("L", (40, 20), 200).save(odd)  # one grey 40x20 JPEG among 32x32 colour PNGs
    Image.new("RGB", (7, 9), (1, 2, 3)).save(tmp_path / "square" / "tiny.bmp")
    ds = load(_folder_settings(tmp_path))
    assert ds.images.shape == (62, 32, 32, 3)
    assert "(2 resized, 1 converted to 32x32 colour)" in ds.origin
    grey = load(_folder_settings(tmp_path, image_height=24, image_width=16, image_channels=1))
    assert grey.images.shape == (62, 24, 16)  # the settings win over the data


def test_refusals_are_one_line(tmp_path: Path, shapes: Dataset) -> None:
    def refused(root: Path, match: str, **values: object) -> None:
        with pytest.raises(DataSourceError, match=match) as err:
            load(_folder_settings(root, **values))
        assert "\n" not in str(err.value)

    refused(tmp_path / "missing", "missing: not a folder")
    refused(tmp_path, "empty folder; expected one subfolder per class")
    write_class_folders(shapes, tmp_path / "data")
    root = tmp_path / "data"
    (root / "hexagon").mkdir()
    refused(root, "hexagon: class 'hexagon' has no images")
    for i in range(2):
        Image.new("RGB", (32, 32)).save(root / "hexagon" / f"{i}.png")
    refused(root, r"class 'hexagon' has only 2 image\(s\); every class needs at least 10")
    assert len(load(_folder_settings(root, min_images_per_class=2))) == 62
    (root / "hexagon" / "broken.png").write_bytes(b"\x89PNG not really")
    refused(root, r"broken\.png: not a readable image", min_images_per_class=2)
    (root / "hexagon" / "broken.png").unlink()
    Image.fromarray(np.full((32, 32), 4000, np.uint16)).save(root / "hexagon" / "deep.png")
    refused(
        root,
        r"deep\.png: I;16 pixels .* mixed with 8-bit images .* save the images as 8-bit",
        min_images_per_class=2,
    )


def test_a_batch_joins_its_dataset(tmp_path: Path, shapes: Dataset) -> None:
    write_class_folders(shapes.subset(np.flatnonzero(shapes.labels == 2)), tmp_path / "b")
    settings = _folder_settings(tmp_path / "b")
    names = ("circle", "square", "triangle")
    batch = load_class_folders(tmp_path / "b", settings, digit_rules=False, class_names=names)
    assert set(batch.labels.tolist()) == {2} and batch.class_names == names
    with pytest.raises(DataSourceError, match="class 'triangle' is not one of the dataset"):
        load_class_folders(tmp_path / "b", settings, digit_rules=False, class_names=("a", "b"))


def test_digit_rules_defaults() -> None:
    assert digit_rules_on(DataSettings())  # embedded
    assert digit_rules_on(DataSettings(source="idx")) and digit_rules_on(
        DataSettings(source="keras")
    )
    assert digit_rules_on(DataSettings(source="npz"))  # Keras's mnist.npz format
    assert not digit_rules_on(DataSettings(source="folder"))
    assert digit_rules_on(DataSettings(source="folder", digit_rules=True))
    assert not digit_rules_on(DataSettings(digit_rules=False))


def test_digit_rules_keep_the_mnist_fit(tmp_path: Path, digits) -> None:
    images, _ = digits
    (tmp_path / "0").mkdir()
    (tmp_path / "1").mkdir()
    for i in range(10):
        Image.fromarray(np.kron(images[i], np.ones((3, 3), np.uint8))).save(
            tmp_path / "0" / f"{i}.png"
        )
        Image.fromarray(images[i]).save(tmp_path / "1" / f"{i}.png")
    fitted = load(_folder_settings(tmp_path, digit_rules=True))
    assert fitted.images.shape == (20, 28, 28) and fitted.class_names == ("0", "1")
    with pytest.raises(DataSourceError, match="resize policy is 'reject'"):
        load(_folder_settings(tmp_path, digit_rules=True, folder_resize="reject"))
    plain = load(_folder_settings(tmp_path))  # no digit rules: bilinear to the common size
    assert plain.images.shape == (20, 84, 84)  # a tie goes to the larger images


def test_holdout_refuses_another_dataset(settings: Settings, digits, shapes: Dataset) -> None:
    store = HoldoutStore(settings.holdout_dir)
    digit_splits = make_splits(Dataset(*digits, "digits"), settings.data, store)
    store.freeze(digit_splits.holdout)
    meta = store.meta.read_text()
    assert '"image_shape": [\n    28,\n    28\n  ]' in meta and '"class_names"' in meta
    with pytest.raises(DataSourceError, match="give this dataset its own home") as err:
        make_splits(shapes, settings.data, store)
    assert "28x28 grey" in str(err.value) and "32x32x3" in str(err.value)
    assert "circle, square, triangle (3)" in str(err.value)
    renamed = Dataset(*digits, "digits", DIGIT_WORDS)
    with pytest.raises(DataSourceError, match=r"classes zero, one, two, three, ... \(10\)"):
        make_splits(renamed, settings.data, store)
    again = make_splits(Dataset(*digits, "digits"), settings.data, store)  # same dataset: fine
    assert again.holdout_frozen and again.holdout.digest == digit_splits.holdout.digest


def test_contract_on_colour_data(settings: Settings, shapes: Dataset) -> None:
    task = ImageTask(32, 32, 3, SHAPES, digit_like=False)
    splits = make_splits(shapes, settings.data)
    report = check_contract(profile_splits(splits), settings.data, None, task=task)
    assert report.success, [o.summary() for o in report.failures]
    columns = {o.column for o in report.outcomes}
    assert "channels" in columns and "border_bright" not in columns  # no digit rules
    assert "mean_intensity" not in columns and report.extra["notes"]  # no reference yet
    grey_task = ImageTask(32, 32, 1, SHAPES, digit_like=False)
    failed = check_contract(profile_splits(splits), settings.data, None, task=grey_task)
    assert {o.column for o in failed.failures} == {"channels"}
    two = ImageTask(32, 32, 3, SHAPES[:2], digit_like=False)
    failed = check_contract(profile_splits(splits), settings.data, None, task=two)
    assert "label" in {o.column for o in failed.failures}
    specs = expectation_specs(settings.data, None, task=DIGITS)
    assert any(s["column"] == "border_bright" for s in specs)  # digit-like: polarity rule


def test_gate_on_a_colour_folder_records_its_reference(
    settings: Settings, tmp_path: Path, shapes: Dataset
) -> None:
    write_class_folders(shapes, tmp_path / "shapes")
    settings.data = _folder_settings(tmp_path / "shapes")
    first = run_data_gate(settings)
    assert first.task == ImageTask(32, 32, 3, SHAPES, digit_like=False)
    path = reference_path(settings, first.task)
    assert path.is_file() and path.parent == settings.versions_dir / "references"
    assert path.name.startswith("32x32x3-")
    assert any("recorded" in note for note in first.report.extra["notes"])
    second = run_data_gate(settings)
    assert second.splits.holdout_frozen and not second.report.extra["notes"]
    assert "mean_intensity" in {o.column for o in second.report.outcomes}  # drift rules now
    version = VersionStore.of(settings).manifest(second.data_version.id)
    assert version.class_names == SHAPES


def test_colour_feedback_batch(tmp_path: Path, shapes: Dataset) -> None:
    task = ImageTask(32, 32, 3, SHAPES, digit_like=False)
    written = write_feedback_batch(tmp_path, shapes.images[:2], [0, 2], task=task)
    assert written.count == 2
    with pytest.raises(DataSourceError, match=r"feedback needs \(N, 28, 28\) images"):
        write_feedback_batch(tmp_path, shapes.images[:2], [0, 2])
    with pytest.raises(DataSourceError, match="one label in 0-2 per image"):
        write_feedback_batch(tmp_path, shapes.images[:2], [0, 3], task=task)


def test_colour_batches_join_their_dataset(
    settings: Settings, tmp_path: Path, shapes: Dataset
) -> None:
    from clearsight.data.ingest import ingest_pending
    from clearsight.data.versions import newest

    write_class_folders(shapes, tmp_path / "shapes")
    settings.data = _folder_settings(tmp_path / "shapes")
    gated = run_data_gate(settings)
    assert settings.incoming_dir is not None
    fresh = colour_shapes(4, size=32, seed=11)
    write_feedback_batch(settings.incoming_dir, fresh.images, fresh.labels, task=gated.task)
    other = colour_shapes(4, size=32, seed=12)
    triangles = other.subset(np.flatnonzero(other.labels == 2))
    write_class_folders(triangles, settings.incoming_dir / "more-triangles", SHAPES)
    result = ingest_pending(settings)
    assert [o.accepted for o in result.outcomes] == [True, True], result.to_markdown()
    base = load(settings.data)
    latest = newest(settings, base, record=False)
    assert latest is not None and latest.version.class_names == SHAPES
    assert latest.dataset.class_names == SHAPES and len(latest.dataset) == 60 + 12 + 4
    # the folder batch's 4 triangles are labelled by their folder's name
    assert np.bincount(latest.dataset.labels).tolist() == [24, 24, 28]
