"""Which Keras backend runs, and on what device: logged with every run.

Each backend answers the question differently, so this is one of the two places (with
``explain.backends``) that knows about TensorFlow, JAX and PyTorch by name.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from typing import Any

import keras

from clearsight.errors import TrainingError


@dataclass(frozen=True)
class DeviceInfo:
    backend: str
    kind: str  # "gpu" or "cpu"
    name: str  # e.g. "NVIDIA H100 80GB HBM3" or the CPU model

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def detect_device() -> DeviceInfo:
    """The accelerator the current backend will use, or the CPU."""
    backend = keras.backend.backend()
    gpu_name: str | None = None
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            gpu_name = details.get("device_name", gpus[0].name)
    elif backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "gpu":
            gpu_name = device.device_kind
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            gpu_name = torch.cuda.get_device_name(0)
    if gpu_name:
        return DeviceInfo(backend, "gpu", gpu_name)
    return DeviceInfo(backend, "cpu", _cpu_name())


def data_parallel(setting: str, backend: str | None = None) -> Any | None:
    """The Keras distribution that ``train.distribution`` asks for, or None (one device).

    Keras' distribution API shards each batch over a 1-D mesh of every visible device and
    replicates the weights; gradients are averaged by the compiled step, so the maths is the
    single-device maths. Only the JAX backend implements it for ``fit``, hence "auto" picks it
    only under JAX with more than one device, and an explicit request elsewhere is refused.
    """
    backend = backend or keras.backend.backend()
    if setting == "off":
        return None
    if backend != "jax":
        if setting == "data_parallel":
            raise TrainingError(
                f"train.distribution=data_parallel needs the JAX backend (this is {backend}); "
                "use --backend jax or distribution off"
            )
        return None
    devices = keras.distribution.list_devices()
    if setting == "auto" and len(devices) < 2:
        return None
    return keras.distribution.DataParallel(devices=devices)


def distribution_name(distribution: Any | None) -> str:
    """What a run logs as ``fit.distribution``: ``off`` or ``data_parallel:<devices>``."""
    if distribution is None:
        return "off"
    return f"data_parallel:{distribution.device_mesh.devices.size}"
