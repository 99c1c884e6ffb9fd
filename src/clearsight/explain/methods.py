"""Gradient and perturbation attributions, backend-free: numpy plus ``ModelGradients``.

Every method takes a Keras model and images (N, H, W, C) float32 in the model's input range,
of the size and channels the model itself declares (``model.input_shape``: 28x28 grey digits,
64x64 colour, anything), explains one or more target classes per image (see
``resolve_targets``) and returns an ``Attribution`` with one (H, W) map per (image, target);
how each method reduces colour channels to one map is in ``Attribution``. Heavy work runs as a few large
batched calls (all integration steps, noise samples or occluded copies at once), because one
compiled call over many images costs far less than many calls over one.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import keras
import numpy as np

from clearsight.choices import GRAD_CAM, INTEGRATED_GRADIENTS, OCCLUSION, SALIENCY, SMOOTHGRAD
from clearsight.explain.attribution import Attribution
from clearsight.explain.gradients import (
    DEFAULT_CHUNK,
    PROBABILITIES,
    ModelGradients,
    as_model_input,
    model_gradients,
    model_input,
)
from clearsight.explain.path_integral import (
    MAX_EVALUATIONS,
    TARGET_GAP,
    adaptive_integral,
    check_rule,
)
from clearsight.explain.targets import TargetSpec, explicit_targets, resolve_targets

Baseline = Literal["black"] | float | np.ndarray
QuadratureRule = Literal["adaptive", "trapezoid", "midpoint"]


@dataclass(frozen=True)
class Rows:
    """The (image, target) pairs one call explains: row m is image ``image_index[m]``."""

    gradients: ModelGradients
    images: np.ndarray  # (N, H, W, C)
    targets: np.ndarray  # (M,)
    image_index: np.ndarray  # (M,)

    @property
    def x(self) -> np.ndarray:
        """The image of each row (M, H, W, C)."""
        x: np.ndarray = self.images[self.image_index]
        return x

    def attribution(
        self,
        method: str,
        maps: np.ndarray,
        params: dict[str, Any],
        start: float,
        targets: np.ndarray | None = None,
        channel_maps: np.ndarray | None = None,
        **extra: Any,
    ) -> Attribution:
        """The result for these rows, timed from ``start`` (a ``time.perf_counter()``);
        ``targets`` replaces deferred (-1) targets with the classes actually explained;
        ``channel_maps`` (M, H, W, C) are the values before ``maps`` reduced the channels."""
        return Attribution(
            method=method,
            maps=np.asarray(maps, dtype=np.float32),
            targets=self.targets if targets is None else targets,
            image_index=self.image_index,
            params=params,
            elapsed_s=time.perf_counter() - start,
            channel_maps=None if channel_maps is None else np.asarray(channel_maps, np.float32),
            **extra,
        )


def prepare_rows(
    model: keras.Model,
    x: np.ndarray,
    targets: TargetSpec,
    k: int | None = None,
    *,
    defer_predicted: bool = False,
) -> Rows:
    """Resolve targets on the model's probabilities and expand images to one row per target.

    With ``defer_predicted``, "predicted" becomes target -1 (arg-max) for the gradient call to
    resolve itself, saving a forward pass; only for methods that evaluate x itself, since
    the arg-max of a noisy or interpolated copy is not the prediction for x.
    """
    gradients = model_gradients(model)
    images = model_input(model, x)
    if defer_predicted and isinstance(targets, str) and targets == "predicted":
        return Rows(gradients, images, np.full(len(images), -1), np.arange(len(images)))
    if isinstance(targets, str):
        per_image = resolve_targets(gradients.scores(images, PROBABILITIES), targets, k=k)
    else:  # classes given: no forward pass to resolve them
        per_image = explicit_targets(targets, len(images), int(model.output_shape[-1]))
    image_index = np.repeat(np.arange(len(images)), per_image.shape[1])
    return Rows(gradients, images, per_image.ravel(), image_index)


def pick(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """scores[m, targets[m]] for every row."""
    return np.take_along_axis(scores, targets[:, None], axis=1)[:, 0]


def in_image_chunks(n_rows: int, copies_per_row: int, fn: Callable[[slice], Any]) -> list[Any]:
    """Call ``fn`` on row slices small enough that their expanded copies fit one chunk."""
    step = max(1, DEFAULT_CHUNK // copies_per_row)
    return [fn(slice(start, start + step)) for start in range(0, n_rows, step)]


def summed_over_channels(values: np.ndarray) -> np.ndarray:
    """(M, H, W, C) -> (M, H, W): the sum over channels, for additive attributions (integrated
    gradients, SHAP), whose maps must still add up to the explained difference."""
    total: np.ndarray = values.sum(axis=-1)
    return total


def gradient_magnitude(values: np.ndarray, reduce: Literal["max", "sum"]) -> np.ndarray:
    """(M, H, W, C) gradients -> (M, H, W): one grey channel keeps its signed gradient (as
    always: the map's magnitude is the method's, its sign a free extra); colour channels are
    reduced by magnitude, since opposite signs in red and blue do not cancel importance:
    Simonyan et al. (2013) take the largest |gradient| over channels, SmoothGrad's authors
    (Smilkov et al. 2017) sum the absolute values."""
    if values.shape[-1] == 1:
        return values[..., 0]
    magnitude = np.abs(values)
    reduced: np.ndarray = magnitude.max(axis=-1) if reduce == "max" else magnitude.sum(axis=-1)
    return reduced


def saliency(
    model: keras.Model,
    x: np.ndarray,
    targets: TargetSpec = "predicted",
    *,
    output: str = "logits",
    k: int | None = None,
) -> Attribution:
    """Input gradients d output[target] / d x (Simonyan et al. 2013): signed on grey images,
    the largest magnitude over channels on colour ones (their rule)."""
    start = time.perf_counter()
    rows = prepare_rows(model, x, targets, k, defer_predicted=True)
    grads, _, explained = rows.gradients.target_gradients(rows.x, rows.targets, output)
    maps = gradient_magnitude(grads, "max")
    return rows.attribution(SALIENCY, maps, {"output": output}, start, explained, grads)


def _quadrature(steps: int, rule: QuadratureRule) -> tuple[np.ndarray, np.ndarray]:
    """Path positions alpha and weights whose weighted gradient sum approximates the integral."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if rule == "trapezoid":
        alphas = np.linspace(0.0, 1.0, steps + 1)
        weights = np.full(steps + 1, 1.0 / steps)
        weights[[0, -1]] /= 2
    elif rule == "midpoint":
        alphas = (np.arange(steps) + 0.5) / steps
        weights = np.full(steps, 1.0 / steps)
    else:
        raise ValueError(f"rule must be 'adaptive', 'trapezoid' or 'midpoint', got {rule!r}")
    return alphas.astype(np.float32), weights.astype(np.float32)


def baseline_rows(baseline: Baseline, rows: Rows) -> np.ndarray:
    """The baseline of every row: black (zeros), a constant fill, or an array."""
    shape = rows.images.shape
    if isinstance(baseline, str):
        if baseline != "black":
            raise ValueError(f"baseline must be 'black', a float or an array, got {baseline!r}")
        return np.zeros((len(rows.targets), *shape[1:]), np.float32)
    if np.isscalar(baseline):
        return np.full((len(rows.targets), *shape[1:]), baseline, np.float32)
    one_image = np.shape(baseline) in (shape[1:], shape[1:3])
    array = as_model_input(np.asarray(baseline)[None] if one_image else baseline)
    if len(array) == 1:
        return np.broadcast_to(array, (len(rows.targets), *shape[1:]))
    if array.shape == shape:
        per_row: np.ndarray = array[rows.image_index]
        return per_row
    raise ValueError(f"baseline of shape {np.shape(baseline)} does not fit images {shape}")


def _describe(baseline: float | np.ndarray) -> float | str:
    return float(baseline) if np.isscalar(baseline) else f"array{np.shape(baseline)}"


def integrated_gradients(
    model: keras.Model,
    x: np.ndarray,
    targets: TargetSpec = "predicted",
    *,
    steps: int | None = None,
    baseline: Baseline = "black",
    rule: QuadratureRule | None = None,
    output: str = "logits",
    k: int | None = None,
    target_gap: float = TARGET_GAP,
    max_evaluations: int = MAX_EVALUATIONS,
) -> Attribution:
    """Integrated gradients (Sundararajan et al. 2017) with completeness measured per row.

    By default (no ``steps``) the adaptive rule of ``path_integral`` places at most
    ``max_evaluations`` points per row until the completeness gap is at most ``target_gap``
    (0.1 %): a fixed 32-step trapezoid left a median gap of ~0.3 % (docs/benchmarks.md).
    Given ``steps``, the fixed rule runs as before: all points of every row's straight path in
    batched calls; the trapezoid (default with ``steps``) evaluates steps + 1 points including
    both ends, which also gives f(baseline) and f(x) for the completeness check at no extra cost.
    """
    start = time.perf_counter()
    if rule is None:
        rule = "adaptive" if steps is None else "trapezoid"
    if rule == "adaptive":
        if steps is not None:
            raise ValueError(
                "rule 'adaptive' chooses its own points: give max_evaluations, not steps"
            )
        check_rule(target_gap, max_evaluations)
    steps = 32 if steps is None else steps
    rows = prepare_rows(model, x, targets, k)
    xs, bases = rows.x, baseline_rows(baseline, rows)
    if rule == "adaptive":
        found = adaptive_integral(
            rows.gradients,
            xs,
            bases,
            rows.targets,
            output,
            target_gap=target_gap,
            max_evaluations=max_evaluations,
        )
        attributions, evaluations = found.attributions, found.evaluations
        baseline_out, instance_out = found.baseline_output, found.instance_output
    else:
        attributions, baseline_out, instance_out = _fixed_rule(rows, xs, bases, steps, rule, output)
        evaluations = np.full(len(xs), steps + 1 if rule == "trapezoid" else steps)
    total = attributions.sum(axis=(1, 2, 3))
    difference = instance_out - baseline_out
    gap = np.abs(total - difference) / np.maximum(np.abs(difference), 1e-12)
    chosen: dict[str, Any] = (
        {"target_gap": target_gap, "max_evaluations": max_evaluations}
        if rule == "adaptive"
        else {"steps": steps}
    )
    params = {
        **chosen,
        "rule": rule,
        "baseline": baseline if isinstance(baseline, str) else _describe(baseline),
        "output": output,
    }
    return rows.attribution(
        INTEGRATED_GRADIENTS,
        summed_over_channels(attributions),
        params,
        start,
        channel_maps=attributions,
        instance_output=instance_out.astype(np.float32),
        baseline_output=baseline_out.astype(np.float32),
        attribution_sum=total.astype(np.float32),
        completeness_gap=gap.astype(np.float32),
        evaluations=evaluations.astype(np.int64),
    )


def _fixed_rule(
    rows: Rows, xs: np.ndarray, bases: np.ndarray, steps: int, rule: QuadratureRule, output: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Attributions (M, H, W, C), f(baseline) and f(x) by a fixed ``steps``-point rule."""
    alphas, weights = _quadrature(steps, rule)
    deltas = xs - bases

    def integrate(part: slice) -> tuple[np.ndarray, np.ndarray]:
        delta = deltas[part]
        path = bases[part, None] + alphas[None, :, None, None, None] * delta[:, None]
        n, s = path.shape[:2]
        grads, picked, _ = rows.gradients.target_gradients(
            path.reshape(n * s, *path.shape[2:]), np.repeat(rows.targets[part], s), output
        )
        mean_grads = np.tensordot(weights, grads.reshape(path.shape), axes=([0], [1]))
        return delta * mean_grads, picked.reshape(n, s)

    parts = in_image_chunks(len(xs), len(alphas), integrate)
    attributions = np.concatenate([p[0] for p in parts])
    picked = np.concatenate([p[1] for p in parts])
    if rule == "trapezoid":
        return attributions, picked[:, 0], picked[:, -1]
    baseline_out = pick(rows.gradients.scores(bases, output), rows.targets)
    instance_out = pick(rows.gradients.scores(xs, output), rows.targets)
    return attributions, baseline_out, instance_out


def smoothgrad(
    model: keras.Model,
    x: np.ndarray,
    targets: TargetSpec = "predicted",
    *,
    seed: int | None = 0,
    samples: int = 32,
    sigma: float = 0.15,
    output: str = "logits",
    k: int | None = None,
) -> Attribution:
    """SmoothGrad (Smilkov et al. 2017): input gradients averaged over noisy copies.

    ``sigma`` is the noise standard deviation as a fraction of each image's value range, as
    in the paper; all ``samples`` copies of every row go through the model in batched calls.
    The seed fixes the noise (None draws fresh noise each call), drawn per image and shared
    by all of its targets, so a map does not depend on which other targets were asked for.
    Colour maps sum the gradient magnitudes over channels (``gradient_magnitude``).
    """
    start = time.perf_counter()
    rows = prepare_rows(model, x, targets, k)
    images = rows.images
    spread = np.ptp(images, axis=(1, 2, 3))[:, None, None, None, None]
    shape = (len(images), samples, *images.shape[1:])
    noise = np.random.default_rng(seed).standard_normal(shape, np.float32) * (sigma * spread)

    def mean_gradient(part: slice) -> np.ndarray:
        index = rows.image_index[part]
        batch = (images[index, None] + noise[index]).astype(np.float32)
        flat = batch.reshape(len(batch) * samples, *images.shape[1:])
        grads, _, _ = rows.gradients.target_gradients(
            flat, np.repeat(rows.targets[part], samples), output
        )
        return grads.reshape(batch.shape).mean(axis=1)

    grads = np.concatenate(in_image_chunks(len(rows.targets), samples, mean_gradient))
    params = {"samples": samples, "sigma": sigma, "seed": seed, "output": output}
    maps = gradient_magnitude(grads, "sum")
    return rows.attribution(SMOOTHGRAD, maps, params, start, channel_maps=grads)


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (M, h, w) maps to (M, H, W), half-pixel centres (like tf.image)."""
    height, width = size
    resized = [cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in maps]
    return np.stack(resized) if resized else np.zeros((0, height, width), np.float32)


def grad_cam(
    model: keras.Model,
    x: np.ndarray,
    targets: TargetSpec = "predicted",
    *,
    layer: str | None = None,
    output: str = "logits",
    k: int | None = None,
) -> Attribution:
    """Grad-CAM (Selvaraju et al. 2017) on a conv layer (the last one by default).

    Channel weights are the target's gradients averaged over the spatial axes (1, 2) of the
    channels-last activations; the weighted sum of channels goes through a ReLU and is
    bilinearly upsampled to the input size. Maps stay in output units (not rescaled to 0-1),
    so they can be compared across images and models; rendering normalises.
    """
    start = time.perf_counter()
    rows = prepare_rows(model, x, targets, k, defer_predicted=True)
    layer = rows.gradients.conv_layer(layer)
    activations, grads, explained = rows.gradients.layer_gradients(
        rows.x, rows.targets, layer, output
    )
    channel_weights = grads.mean(axis=(1, 2))
    cams = np.maximum(np.einsum("mhwc,mc->mhw", activations, channel_weights), 0.0)
    maps = upsample(cams.astype(np.float32), rows.images.shape[1:3])
    params = {"layer": layer, "output": output}
    return rows.attribution(GRAD_CAM, maps, params, start, explained)


def _window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets along one axis, the last one flush with the edge so every pixel is hit."""
    starts = list(range(0, max(size - window, 0) + 1, stride))
    if starts[-1] + window < size:
        starts.append(size - window)
    return starts


def occlusion_masks(height: int, width: int, window: int, stride: int) -> np.ndarray:
    """One boolean (H, W) mask per window position (P, H, W)."""
    tops, lefts = _window_starts(height, window, stride), _window_starts(width, window, stride)
    masks = np.zeros((len(tops) * len(lefts), height, width), bool)
    for mask, (top, left) in zip(masks, itertools.product(tops, lefts), strict=True):
        mask[top : top + window, left : left + window] = True
    return masks


OCCLUSION_WINDOWS_PER_SIDE = 7  # a 28x28 digit gets the 4-pixel window, stride 2, as always


def occlusion_window(height: int, width: int) -> tuple[int, int]:
    """(window, stride) for an image of this size: a seventh of the shorter side (4 on 28x28
    digits, 9 on 64x64, 1 on 8x8) with half-window strides, so a window covers a comparable
    part of any image and the number of occluded copies stays near 13 x 13."""
    window = max(1, round(min(height, width) / OCCLUSION_WINDOWS_PER_SIDE))
    return window, max(1, window // 2)


def occlusion(
    model: keras.Model,
    x: np.ndarray,
    targets: TargetSpec = "predicted",
    *,
    window: int | None = None,
    stride: int | None = None,
    fill: float = 0.0,
    output: str = "logits",
    k: int | None = None,
) -> Attribution:
    """Occlusion (Zeiler & Fergus 2014): the drop of the target output when a square window
    is replaced by ``fill`` in every channel, averaged over the windows covering each pixel.

    ``window`` and ``stride`` default to ``occlusion_window`` of the image size (4 and 2 on
    28x28). Every occluded copy of every row goes through the model in batched forward passes.
    """
    start = time.perf_counter()
    rows = prepare_rows(model, x, targets, k)
    xs = rows.x
    height, width = xs.shape[1:3]
    default_window, default_stride = occlusion_window(height, width)
    window = default_window if window is None else window
    stride = default_stride if stride is None else stride
    masks = occlusion_masks(height, width, window, stride)
    coverage = masks.sum(axis=0)
    reference = pick(rows.gradients.scores(xs, output), rows.targets)
    keep = (~masks)[None, :, :, :, None]

    def drops(part: slice) -> np.ndarray:
        batch = np.where(keep, xs[part, None], np.float32(fill))
        n, p = batch.shape[:2]
        scores = rows.gradients.scores(batch.reshape(n * p, *xs.shape[1:]), output)
        occluded = pick(scores, np.repeat(rows.targets[part], p)).reshape(n, p)
        drop: np.ndarray = reference[part, None] - occluded
        return drop

    drop = np.concatenate(in_image_chunks(len(xs), len(masks), drops))
    maps = np.einsum("mp,phw->mhw", drop, masks.astype(np.float32)) / coverage
    params = {"window": window, "stride": stride, "fill": fill, "output": output}
    return rows.attribution(OCCLUSION, maps, params, start)


def activations(model: keras.Model, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's output for a batch, keyed by layer name (conv, pool, flatten, dense...)."""
    return model_gradients(model).layer_outputs(x)
