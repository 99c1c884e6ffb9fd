import json

import numpy as np
import pytest

from clearsight.explain import decode_map, encode_map


def test_round_trip_keeps_float16_precision_relative_to_peak():
    values = np.random.default_rng(0).normal(0, 3, (28, 28)).astype(np.float32)
    payload = json.loads(json.dumps(encode_map(values)))
    assert payload["shape"] == [28, 28] and payload["dtype"] == "float16"
    decoded = decode_map(payload)
    assert decoded.dtype == np.float32 and decoded.shape == values.shape
    assert np.abs(decoded - values).max() <= 1e-3 * np.abs(values).max()
    assert len(payload["data"]) < 28 * 28 * 2 * 4 / 3 + 4  # 2 bytes per value, base64


def test_zero_map_and_batches_round_trip():
    np.testing.assert_array_equal(decode_map(encode_map(np.zeros((2, 3, 4)))), np.zeros((2, 3, 4)))


def test_rejects_non_finite_values():
    with pytest.raises(ValueError):
        encode_map(np.array([1.0, np.nan]))
