"""The Open Inference Protocol v2, through tritonclient's own HTTP client."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from clearsight.explain import explain

from .conftest import Registry, Server, offline_probabilities

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def oip(server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=60)


def test_health_and_metadata(oip: triton.InferenceServerClient, registry: Registry) -> None:
    name = registry.settings.tracking.registered_model
    assert oip.is_server_live() and oip.is_server_ready()
    assert oip.is_model_ready(name)
    meta = oip.get_model_metadata(name)
    assert meta["versions"] == [registry.version]
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "label", "attribution"]
    with pytest.raises(InferenceServerException, match="no model"):
        oip.get_model_metadata("other-model")


def test_versioned_metadata_and_readiness(
    oip: triton.InferenceServerClient, registry: Registry
) -> None:
    """tritonclient's calls with a version hit /v2/models/{name}/versions/{v}[/ready]."""
    name, version = registry.settings.tracking.registered_model, registry.version
    assert oip.is_model_ready(name, version)
    assert oip.get_model_metadata(name, version)["versions"] == [version]
    assert not oip.is_model_ready(name, "999")
    with pytest.raises(InferenceServerException, match="no model clearsight-cnn version 999"):
        oip.get_model_metadata(name, "999")


@pytest.mark.parametrize("binary", [True, False])
def test_infer_with_attribution(
    oip: triton.InferenceServerClient, registry: Registry, server: Server, digits, binary: bool
) -> None:
    images, _ = digits
    x = images[[5, 205]].astype(np.float32) / 255.0
    tensor = triton.InferInput("image", [2, 28, 28, 1], "FP32")
    tensor.set_data_from_numpy(x[..., None], binary_data=binary)
    outputs = [
        triton.InferRequestedOutput("probabilities", binary_data=binary),
        triton.InferRequestedOutput("label", binary_data=binary),
        triton.InferRequestedOutput("attribution", binary_data=binary),
    ]
    name = registry.settings.tracking.registered_model
    result = oip.infer(
        name,
        [tensor],
        outputs=outputs,
        model_version=registry.version,
        parameters={"attribution_method": "grad_cam"},
    )
    expected = offline_probabilities(server.model, x)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-5)
    assert result.as_numpy("label").tolist() == expected.argmax(axis=1).tolist()
    maps = result.as_numpy("attribution")
    offline = explain(server.model, x, "grad_cam").maps
    np.testing.assert_allclose(maps, offline, atol=1e-4 * float(np.abs(offline).max()) + 1e-6)


def test_uint8_input_and_default_outputs(
    oip: triton.InferenceServerClient, registry: Registry, server: Server, digits
) -> None:
    images, _ = digits
    tensor = triton.InferInput("image", [3, 28, 28], "UINT8")
    tensor.set_data_from_numpy(images[:3])
    result = oip.infer(registry.settings.tracking.registered_model, [tensor])
    expected = offline_probabilities(server.model, images[:3].astype(np.float32) / 255.0)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-5)


def test_bad_tensors_are_400(oip: triton.InferenceServerClient, registry: Registry) -> None:
    name = registry.settings.tracking.registered_model
    tensor = triton.InferInput("image", [1, 27, 28], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 27, 28), np.float32))
    with pytest.raises(InferenceServerException, match="expected"):
        oip.infer(name, [tensor])
    tensor = triton.InferInput("image", [1, 28, 28], "FP32")
    tensor.set_data_from_numpy(np.full((1, 28, 28), 7.0, np.float32))
    with pytest.raises(InferenceServerException, match="must lie in"):
        oip.infer(name, [tensor])
