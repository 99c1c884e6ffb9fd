"""Shared fixtures: settings that write only under tmp, and small real-digit data sets."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clearsight.config import DataSettings, Settings

REPO = Path(__file__).resolve().parents[1]


def stores_under(root: Path, **sections: Any) -> Settings:
    """The repository's contract with every store under ``root``; default data settings and no
    system metrics unless ``sections`` say otherwise."""
    defaults: dict[str, Any] = {"data": DataSettings(), "tracking": {"log_system_metrics": False}}
    return Settings(
        home=REPO, data_dir=root / "data", mlflow_dir=root / "mlflow", **(defaults | sections)
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Repo contract, but data and MLflow stores in a temporary folder."""
    return Settings(
        home=REPO, data_dir=tmp_path / "data", mlflow_dir=tmp_path / "mlflow", data=DataSettings()
    )


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """40 real MNIST digits per class (400), from the embedded source, uint8 (N, 28, 28)."""
    from clearsight.data.sources import load_embedded

    full = load_embedded()
    index = np.concatenate([np.flatnonzero(full.labels == c)[:40] for c in range(10)])
    return full.images[index].copy(), full.labels[index].copy()


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    """Write an IDX file the way the MNIST distribution does (big-endian header)."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}
    dtype = array.dtype
    header = bytes([0, 0, codes[dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = array.astype(dtype.newbyteorder(">")).tobytes()
    raw = header + body
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_idx_pair(
    folder: Path, images: np.ndarray, labels: np.ndarray, *, gz: bool = False, prefix: str = "train"
) -> Path:
    """An MNIST-style image/label IDX pair in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, gz=gz)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels.astype(np.uint8), gz=gz)
    return folder
