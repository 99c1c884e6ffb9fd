"""``clearsight explain IMAGE``'s library call reads a dark-on-light file like its original."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from clearsight.reporting.image_report import explain_file

from .conftest import TrainedSeed


def test_a_dark_on_light_file_is_inverted_and_says_so(trained: TrainedSeed, tmp_path: Path) -> None:
    pixels = np.round(trained.x_test[:10, ..., 0] * 255).astype(np.uint8)
    for i, digit in enumerate(pixels):
        big = np.kron(digit, np.ones((3, 3), np.uint8))  # 84x84, as a scan might be
        Image.fromarray(big).save(tmp_path / f"light{i}.jpg", quality=90)
        Image.fromarray(255 - big).save(tmp_path / f"dark{i}.jpg", quality=90)
        light = explain_file(trained.model, tmp_path / f"light{i}.jpg", ["saliency"], tmp_path)
        dark = explain_file(trained.model, tmp_path / f"dark{i}.jpg", ["saliency"], tmp_path)
        assert dark.label == light.label, i
        assert dark.inverted and dark.preprocessing[0].startswith("inverted: dark digit")
        assert not light.inverted and light.preprocessing[0].startswith("fitted: 84x84")
        assert (tmp_path / f"dark{i}_saliency.png").is_file()
