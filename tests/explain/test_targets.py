import numpy as np
import pytest

from clearsight.explain import resolve_targets

PROBS = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])


def test_predicted_is_argmax_column():
    np.testing.assert_array_equal(resolve_targets(PROBS), [[1], [0]])


@pytest.mark.parametrize("spec,k", [("top-k", 2), ("top-2", None)])
def test_top_k_best_first(spec, k):
    np.testing.assert_array_equal(resolve_targets(PROBS, spec, k=k), [[1, 2], [0, 2]])


def test_int_and_class_list_apply_to_every_image():
    np.testing.assert_array_equal(resolve_targets(PROBS, 2), [[2], [2]])
    np.testing.assert_array_equal(resolve_targets(PROBS, [2, 0]), [[2, 0], [2, 0]])


def test_per_image_targets_from_2d_array():
    labels = np.array([2, 1])
    np.testing.assert_array_equal(resolve_targets(PROBS, labels[:, None]), [[2], [1]])


@pytest.mark.parametrize(
    "spec,k", [("top-k", None), ("top-4", None), ("best", None), (3, None), ([[0], [1], [2]], None)]
)
def test_rejects_bad_targets(spec, k):
    with pytest.raises(ValueError):
        resolve_targets(PROBS, spec, k=k)
