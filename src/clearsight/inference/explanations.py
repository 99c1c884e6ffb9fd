"""Explanations on request: run ``clearsight.explain`` methods within a time budget, encode maps.

Each requested method runs once per request, in chunks: one compiled call explains every image
and target of a slice of the images, slices sized to a few hundred units of the explanation
budget (``clearsight.inference.budget``), so that a scheduler can interleave the chunks of
concurrent requests (``clearsight.inference.scheduling``). Before a method runs, its cost is estimated from what it measurably
took on this host (per image and target, updated after every call); if that does not fit in
what is left of ``budget_ms``, saliency (a single gradient, ~2 ms) runs instead and the images
say so. Saliency itself always runs: it is the floor, not skipped.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, cast

import keras
import numpy as np

from clearsight.choices import MethodName
from clearsight.explain import Attribution, encode_map, explain, get_method
from clearsight.explain.targets import TargetSpec, resolve_targets
from clearsight.inference.budget import FALLBACK, method_units
from clearsight.inference.schemas import (
    ExplainOptions,
    Explanation,
    ExplanationQuality,
    ExplanationTiming,
)

logger = logging.getLogger(__name__)

FALLBACK_METHOD: MethodName = FALLBACK  # one floor for the time and the unit budget


@dataclass
class CostModel:
    """Milliseconds per (image, target) row of each method, as measured on this host.

    An exponential moving average: recent calls count most, one slow call does not stick.
    """

    ms_per_row: dict[str, float] = field(default_factory=dict)
    weight: float = 0.3

    def estimate(self, method: str, rows: int) -> float:
        return self.ms_per_row.get(method, 0.0) * rows

    def observe(self, method: str, elapsed_ms: float, rows: int) -> None:
        sample = elapsed_ms / max(rows, 1)
        old = self.ms_per_row.get(method)
        self.ms_per_row[method] = (
            sample if old is None else (1 - self.weight) * old + self.weight * sample
        )


@dataclass
class ExplainedBatch:
    """Explanations per image, warnings per image, compute time per method run, and the raw
    attributions by the method that produced them (the traffic log summarises them)."""

    explanations: list[list[Explanation]]
    warnings: list[list[str]]
    methods_ms: dict[str, float]
    attributions: dict[str, Attribution] = field(default_factory=dict)


def method_parameters(method: MethodName, options: ExplainOptions) -> dict[str, Any]:
    """Keyword arguments of the library function for ``method`` from the request options."""
    chosen = getattr(options.parameters, method, None)
    return chosen.model_dump() if chosen is not None else {}


def target_spec(options: ExplainOptions) -> tuple[TargetSpec, dict[str, Any], int]:
    """(targets, extra keyword arguments, targets per image) for ``clearsight.explain``."""
    if options.targets == "predicted":
        return "predicted", {}, 1
    if options.targets == "top-k":
        return "top-k", {"k": options.k}, options.k
    assert options.classes is not None
    return np.asarray(options.classes, dtype=np.int64), {}, len(options.classes)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_explanation(
    attribution: Attribution,
    row: int,
    image: np.ndarray,
    requested: MethodName,
    served: MethodName,
    options: ExplainOptions,
    class_names: tuple[str, ...] | None = None,
) -> Explanation:
    """One row of an attribution as the API's ``Explanation``, in the requested encodings.

    ``image``: the explained image as the overlay draws it, (H, W) grey or (H, W, 3) colour
    in 0-1 (``overlay_image``); ``class_names`` name the target."""
    start = time.perf_counter()
    values = attribution.maps[row]
    polarity = get_method(served).ranking
    encoded = encode_map(values)  # refuses NaN/inf: a broken map must not look like a map
    fields: dict[str, Any] = {"shape": encoded["shape"], "scale": encoded["scale"]}
    if "float16" in options.encodings:
        fields["data"] = encoded["data"]
    if "png_heatmap" in options.encodings or "png_overlay" in options.encodings:
        from clearsight.explain.render import heatmap_png, overlay_png

        if "png_heatmap" in options.encodings:
            fields["png_heatmap"] = _b64(heatmap_png(values, polarity=polarity))
        if "png_overlay" in options.encodings:
            fields["png_overlay"] = _b64(overlay_png(image, values, polarity=polarity))
    quality = ExplanationQuality()
    if attribution.completeness_gap is not None:
        assert attribution.instance_output is not None
        assert attribution.baseline_output is not None
        assert attribution.attribution_sum is not None
        quality = ExplanationQuality(
            baseline_output=float(attribution.baseline_output[row]),
            instance_output=float(attribution.instance_output[row]),
            attribution_sum=float(attribution.attribution_sum[row]),
            completeness_gap=float(attribution.completeness_gap[row]),
        )
    target = int(attribution.targets[row])
    return Explanation(
        method=served,
        requested_method=requested,
        target=target,
        target_name=class_names[target] if class_names and target < len(class_names) else None,
        polarity=polarity,
        quality=quality,
        params=attribution.params,
        timing=ExplanationTiming(
            compute_ms=1e3 * attribution.elapsed_s,
            encode_ms=1e3 * (time.perf_counter() - start),
        ),
        **fields,
    )


class BatchExplanation:
    """The explanations of one request, as a sequence of chunks that a scheduler can interleave
    with other requests' chunks.

    ``chunks()`` yields callables; each computes one method over a slice of the images (at
    most ``chunk_units`` units, at least one image) and encodes its maps. The caller runs
    each (on a worker thread) before asking for the next: decisions between chunks (the time
    budget, substitutions) then see what the earlier ones took. ``result()`` gathers them.

    ``probabilities``: the request's forward pass, when the caller has it. The target classes
    are then resolved once here, and no method runs the forward pass again (a profile of
    predict + explain showed that repeat at 8 % of the server's time). ``substitutions``: a
    requested method and the one that runs instead (the explanation budget's plan).
    """

    def __init__(
        self,
        model: keras.Model,
        x: np.ndarray,
        options: ExplainOptions,
        costs: CostModel,
        probabilities: np.ndarray | None = None,
        *,
        substitutions: Mapping[str, str] | None = None,
        chunk_units: float | None = None,
        class_names: tuple[str, ...] | None = None,
    ) -> None:
        self.model, self.x, self.options, self.costs = model, x, options, costs
        self.class_names = class_names
        self.substitutions = dict(substitutions or {})
        n_images = len(x)
        targets, self.target_kwargs, self.per_image = target_spec(options)
        if probabilities is not None:
            targets = resolve_targets(probabilities, targets, **self.target_kwargs)
            self.target_kwargs = {}
        self.targets = targets
        self.chunk_units = chunk_units
        self.deadline = None
        if options.budget_ms is not None:
            self.deadline = time.perf_counter() + options.budget_ms / 1e3
        self.explanations: list[list[Explanation]] = [[] for _ in range(n_images)]
        self.warnings: list[list[str]] = [[] for _ in range(n_images)]
        self.methods_ms: dict[str, float] = {}
        self.computed: dict[str, Attribution] = {}
        self._failed: str | None = None  # the current method's failure, if it failed

    def _warn(self, message: str, images: range | None = None) -> None:
        for index in images if images is not None else range(len(self.x)):
            self.warnings[index].append(message)

    def _slices(self, method: MethodName) -> list[slice]:
        """Image slices of at most ``chunk_units`` units of ``method`` each (one image at
        least): the unit of fair sharing."""
        n = len(self.x)
        if self.chunk_units is None or n == 0:
            return [slice(0, n)]
        size = (int(self.x.shape[1]), int(self.x.shape[2]))
        params = method_parameters(method, self.options)
        per_image = self.per_image * method_units(method, params, size=size)
        step = max(1, int(self.chunk_units // max(per_image, 1e-9)))
        return [slice(start, min(start + step, n)) for start in range(0, n, step)]

    def _targets_for(self, part: slice) -> TargetSpec:
        """The targets of the images in ``part``: per-image rows when resolved, else as given."""
        if isinstance(self.targets, np.ndarray) and self.targets.ndim == 2:
            return self.targets[part]
        return self.targets

    def chunks(self) -> Iterator[Callable[[], None]]:
        """The work, chunk by chunk; run each before asking for the next."""
        n_images = len(self.x)
        rows = n_images * self.per_image
        for requested in self.options.methods:
            served = cast(MethodName, self.substitutions.get(requested, requested))
            if served == requested:
                served = self._within_time(requested, rows)
            done = self.computed.get(served)
            parts: list[tuple[int, Attribution]] = []
            for part in [slice(0, n_images)] if done is not None else self._slices(served):
                yield partial(self._run_chunk, requested, served, part, parts)
                if self._failed is not None:
                    break
            if self._failed is None and done is None and parts:
                attribution = concat_attributions(parts)
                self.computed[served] = attribution
                self.methods_ms[served] = 1e3 * attribution.elapsed_s
            self._failed = None

    def _within_time(self, requested: MethodName, rows: int) -> MethodName:
        """``requested``, or saliency when its measured cost does not fit the time left."""
        if self.deadline is None or requested == FALLBACK_METHOD or requested in self.computed:
            return requested
        left_ms = 1e3 * (self.deadline - time.perf_counter())
        needed_ms = self.costs.estimate(requested, rows)
        if needed_ms <= left_ms:
            return requested
        self._warn(
            f"{requested} replaced by {FALLBACK_METHOD}: it needs about "
            f"{needed_ms:.0f} ms, {max(left_ms, 0.0):.0f} ms of the "
            f"{self.options.budget_ms:g} ms budget were left"
        )
        return FALLBACK_METHOD

    def _run_chunk(
        self,
        requested: MethodName,
        served: MethodName,
        part: slice,
        parts: list[tuple[int, Attribution]],
    ) -> None:
        """Compute ``served`` on the images in ``part`` (or reuse it), encode those maps."""
        attribution = self.computed.get(served)
        offset = 0
        if attribution is None:
            try:
                attribution = explain(
                    self.model,
                    self.x[part],
                    served,
                    self._targets_for(part),
                    **self.target_kwargs,
                    **method_parameters(served, self.options),
                )
            except Exception as err:  # one failing method must not fail the predictions
                logger.exception("explanation method %s failed", served)
                reason = str(err).splitlines()[0] if str(err) else repr(err)
                self._failed = f"{served} failed: {reason}"
                self._warn(self._failed, range(part.start, len(self.x)))
                return
            rows = (part.stop - part.start) * self.per_image
            self.costs.observe(served, 1e3 * attribution.elapsed_s, rows)
            parts.append((part.start, attribution))
            offset = part.start
        for row, image_index in enumerate(attribution.image_index):
            index = int(image_index) + offset
            try:
                self.explanations[index].append(
                    encode_explanation(
                        attribution,
                        row,
                        overlay_image(self.x[index]),
                        requested,
                        served,
                        self.options,
                        self.class_names,
                    )
                )
            except ValueError as err:
                self.warnings[index].append(
                    f"{served} map for class {attribution.targets[row]}: {err}"
                )

    def result(self) -> ExplainedBatch:
        return ExplainedBatch(self.explanations, self.warnings, self.methods_ms, self.computed)


def overlay_image(image: np.ndarray) -> np.ndarray:
    """One model input (H, W, C) as the overlay's background: (H, W) grey, (H, W, 3) RGB.

    Colour images are drawn in colour (``render.overlay_png`` takes (H, W, 3))."""
    return image[..., 0] if image.shape[-1] == 1 else image


def concat_attributions(parts: list[tuple[int, Attribution]]) -> Attribution:
    """One attribution from those of consecutive image slices (``(first image, part)``):
    rows in order, image indices shifted to the whole batch, compute time summed."""
    if len(parts) == 1 and parts[0][0] == 0:
        return parts[0][1]
    first = parts[0][1]

    def joined(name: str) -> np.ndarray | None:
        values = [getattr(a, name) for _, a in parts]
        return None if any(v is None for v in values) else np.concatenate(values)

    return replace(
        first,
        maps=np.concatenate([a.maps for _, a in parts]),
        targets=np.concatenate([a.targets for _, a in parts]),
        image_index=np.concatenate([a.image_index + start for start, a in parts]),
        elapsed_s=sum(a.elapsed_s for _, a in parts),
        instance_output=joined("instance_output"),
        baseline_output=joined("baseline_output"),
        attribution_sum=joined("attribution_sum"),
        completeness_gap=joined("completeness_gap"),
    )


def explain_batch(
    model: keras.Model,
    x: np.ndarray,
    options: ExplainOptions,
    costs: CostModel,
    probabilities: np.ndarray | None = None,
    *,
    substitutions: Mapping[str, str] | None = None,
    chunk_units: float | None = None,
    class_names: tuple[str, ...] | None = None,
) -> ExplainedBatch:
    """Explain every image of ``x`` (N, H, W, C) with the requested methods and budget,
    all chunks in this thread (see ``BatchExplanation``)."""
    job = BatchExplanation(
        model,
        x,
        options,
        costs,
        probabilities,
        substitutions=substitutions,
        chunk_units=chunk_units,
        class_names=class_names,
    )
    for chunk in job.chunks():
        chunk()
    return job.result()
