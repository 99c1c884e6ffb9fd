"""What an explanation request costs, in units, and what to do with one over the limit.

Why units and not milliseconds: a limit must be decided before any work runs, from the
request alone, the same way on every host. One **unit** is one gradient evaluation of one
image for one target (a forward and a backward pass, about 0.3-0.6 ms on 2 CPU cores). A
request costs

    images x targets per image x sum over the methods it runs of (evaluations x weight)

where a method's evaluations per (image, target) and its weight are (``METHOD_COSTS``):

| method | evaluations | weight | why the weight |
|---|---|---|---|
| saliency | 1 | 1 | one gradient |
| grad_cam | 1 | 1 | one gradient at the last conv layer |
| integrated_gradients | steps + 1 (trapezoid); no steps: max_evaluations (32) | 1 | one gradient per path point |
| smoothgrad | samples | 1 | one gradient per noisy copy |
| occlusion | windows (13 x 13 = 169 at window 4, stride 2 on 28x28) | 0.5 | forward passes only |
| shap | nsamples | 6 | expected gradients plus SHAP's per-call set-up (~100 ms a chunk) |

Weights were measured on the seed CNN on 2 cores (docs/benchmarks.md). A method that a
request names twice, or that several substitutions map to (saliency), runs once and is
counted once. Map encoding (float16, PNG) is not counted: it is linear in the maps, which the
units already bound.

Over the limit a request is refused (422 ``over_budget``, the limit and its cost named) or,
with the ``degrade`` policy, reduced in this order until it fits, each step said in the
answer: (1) halve the largest step parameter (IG steps, SmoothGrad samples, SHAP nsamples)
down to its floor; (2) fewer targets per image (top-k: smaller k; explicit: the first
classes listed); (3) replace methods by saliency, the most expensive first.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from clearsight.choices import (
    GRAD_CAM,
    INTEGRATED_GRADIENTS,
    OCCLUSION,
    SALIENCY,
    SHAP,
    SMOOTHGRAD,
    MethodName,
)
from clearsight.errors import RequestError
from clearsight.inference.schemas import ExplainOptions
from clearsight.task import DIGITS

OverBudget = Literal["refuse", "degrade"]
FALLBACK: MethodName = SALIENCY
# (height, width) of the explained images: occlusion's windows depend on it.
Size = tuple[int, int]
DIGIT_SIZE: Size = (DIGITS.height, DIGITS.width)


@dataclass(frozen=True)
class MethodCost:
    """How one method's evaluations per (image, target) follow from its parameters."""

    weight: float
    parameter: str | None = None  # the request parameter that counts evaluations
    floor: int = 1  # the smallest value ``degrade`` reduces that parameter to
    extra: int = 0  # evaluations on top of the parameter (IG's trapezoid end point)
    # the library parameter bounding evaluations when ``parameter`` is None (IG's adaptive
    # rule stops at ``max_evaluations``): a limit is decided before the work, so the bound is
    # charged, not the evaluations the rule ends up using
    unset: str | None = None


METHOD_COSTS: dict[str, MethodCost] = {
    SALIENCY: MethodCost(1.0),
    GRAD_CAM: MethodCost(1.0),
    INTEGRATED_GRADIENTS: MethodCost(1.0, "steps", floor=16, extra=1, unset="max_evaluations"),
    SMOOTHGRAD: MethodCost(1.0, "samples", floor=8),
    OCCLUSION: MethodCost(0.5),
    SHAP: MethodCost(6.0, "nsamples", floor=10),
}


def _library_default(method: str, name: str) -> Any:
    """A parameter's default in the library function (what a request that omits it gets)."""
    from clearsight.explain import get_method

    return inspect.signature(get_method(method).function).parameters[name].default


def window_starts(window: int, stride: int, side: int) -> int:
    """Window positions of occlusion along one side (see ``occlusion_masks``)."""
    starts = list(range(0, max(side - window, 0) + 1, stride))
    if starts[-1] + window < side:
        starts.append(side - window)
    return len(starts)


def occlusion_windows(window: int, stride: int, size: int | Size = DIGIT_SIZE) -> int:
    """Window positions of occlusion on an image of ``size`` (a side, or (height, width))."""
    height, width = (size, size) if isinstance(size, int) else size
    return window_starts(window, stride, height) * window_starts(window, stride, width)


def method_units(
    method: str, params: Mapping[str, Any] | None = None, *, size: Size = DIGIT_SIZE
) -> float:
    """Units of ``method`` for one (image, target) of ``size`` (height, width) with ``params``
    (library defaults for the ones not given)."""
    cost = METHOD_COSTS[method]
    params = params or {}
    if method == OCCLUSION:
        from clearsight.explain.methods import occlusion_window  # defaults follow the size

        default_window, default_stride = occlusion_window(*size)
        window = params.get("window") or default_window
        stride = params.get("stride") or default_stride
        return cost.weight * occlusion_windows(int(window), int(stride), size)
    if cost.parameter is None:
        return cost.weight
    return cost.weight * (_step_count(method, params) + cost.extra)


def _step_count(method: str, params: Mapping[str, Any]) -> int:
    """The method's step parameter, or when it is None (adaptive), its equivalent: the
    evaluation bound less ``extra``, so that halving it degrades to a fixed step count."""
    cost = METHOD_COSTS[method]
    assert cost.parameter is not None
    value = params.get(cost.parameter, _library_default(method, cost.parameter))
    if value is None and cost.unset is not None:
        return int(params.get(cost.unset, _library_default(method, cost.unset))) - cost.extra
    return int(value)


def _parameters(method: str, options: ExplainOptions) -> dict[str, Any]:
    chosen = getattr(options.parameters, method, None)
    return chosen.model_dump() if chosen is not None else {}


def targets_per_image(options: ExplainOptions) -> int:
    if options.targets == "top-k":
        return options.k
    if options.targets == "explicit":
        return len(options.classes or [])
    return 1


@dataclass(frozen=True)
class Cost:
    """A request's cost: units in all, and units per (image, target) of each method run."""

    images: int
    targets: int
    per_method: dict[str, float]

    @property
    def units(self) -> float:
        return self.images * self.targets * sum(self.per_method.values())

    def describe(self) -> str:
        methods = " + ".join(f"{m} {u:g}" for m, u in self.per_method.items())
        return (
            f"{self.units:,.0f} units ({self.images} image(s) x {self.targets} target(s) x "
            f"({methods}) units each)"
        )


def request_cost(
    options: ExplainOptions,
    images: int,
    substitutions: Mapping[str, str] | None = None,
    *,
    size: Size = DIGIT_SIZE,
) -> Cost:
    """The cost of explaining ``images`` images of ``size`` with ``options``; ``substitutions``
    maps a requested method to the one that runs instead (each method run counts once)."""
    substitutions = substitutions or {}
    per_method: dict[str, float] = {}
    for requested in options.methods:
        served = substitutions.get(requested, requested)
        if served not in per_method:
            params = _parameters(served, options) if served == requested else {}
            per_method[served] = method_units(served, params, size=size)
    return Cost(images, targets_per_image(options), per_method)


@dataclass(frozen=True)
class ExplainBudget:
    """The server's limit: ``max_units`` per request, and what happens to a request over it."""

    max_units: int = 4096
    over_budget: OverBudget = "refuse"


@dataclass(frozen=True)
class BudgetPlan:
    """The options to run, the methods substituted, and what was reduced (empty: nothing)."""

    options: ExplainOptions
    substitutions: dict[str, str] = field(default_factory=dict)
    reductions: list[str] = field(default_factory=list)
    requested_units: float = 0.0
    units: float = 0.0
    limit: int = 0


def over_budget(cost: Cost, limit: int) -> RequestError:
    """The 422 that names the limit, the request's cost and how to get under it."""
    per_image = cost.units / max(cost.images, 1)
    fit = int(limit // per_image) if per_image else cost.images
    hint = (
        f"at most {fit} image(s) with these options"
        if fit >= 1
        else "fewer methods, steps or targets per image"
    )
    return RequestError(
        422,
        "over_budget",
        f"explanations of this request cost {cost.describe()}, over the limit of {limit:,} "
        f"units per request (max_explain_units); send fewer images, methods, steps or "
        f"targets: {hint}",
        [
            {
                "limit": limit,
                "units": cost.units,
                "images": cost.images,
                "targets_per_image": cost.targets,
                "units_per_target": cost.per_method,
            }
        ],
    )


def plan(
    options: ExplainOptions, images: int, budget: ExplainBudget, *, size: Size = DIGIT_SIZE
) -> BudgetPlan:
    """Fit ``options`` for ``images`` images of ``size`` into ``budget``: unchanged when within
    it; else refused (``RequestError`` 422) or reduced in the documented order, per the policy."""
    requested = request_cost(options, images, size=size)
    if requested.units <= budget.max_units:
        return BudgetPlan(options, {}, [], requested.units, requested.units, budget.max_units)
    if budget.over_budget == "refuse":
        raise over_budget(requested, budget.max_units)
    current = options
    substitutions: dict[str, str] = {}
    reductions: list[str] = []
    for step in (_fewer_steps, _fewer_targets, _cheaper_methods):
        current, substitutions = step(
            current, substitutions, images, budget.max_units, reductions, size
        )
        if request_cost(current, images, substitutions, size=size).units <= budget.max_units:
            final = request_cost(current, images, substitutions, size=size).units
            return BudgetPlan(
                current, substitutions, reductions, requested.units, final, budget.max_units
            )
    raise over_budget(request_cost(current, images, substitutions, size=size), budget.max_units)


def _units(
    options: ExplainOptions, images: int, substitutions: Mapping[str, str], size: Size
) -> float:
    return request_cost(options, images, substitutions, size=size).units


def _above_floor(method: str, options: ExplainOptions) -> bool:
    """Whether ``method`` has a step parameter and it is still above its floor."""
    cost = METHOD_COSTS[method]
    if cost.parameter is None:
        return False
    return _step_count(method, _parameters(method, options)) > cost.floor


def _fewer_steps(
    options: ExplainOptions,
    substitutions: dict[str, str],
    images: int,
    limit: int,
    reductions: list[str],
    size: Size = DIGIT_SIZE,
) -> tuple[ExplainOptions, dict[str, str]]:
    """Halve the step parameter that costs most, again and again, down to each floor."""
    original = {m: _parameters(m, options) for m in options.methods}
    while _units(options, images, substitutions, size) > limit:
        cost = request_cost(options, images, substitutions, size=size)
        reducible = [
            m
            for m, _ in sorted(cost.per_method.items(), key=lambda item: -item[1])
            if _above_floor(m, options)
        ]
        if not reducible:
            break
        method = reducible[0]
        name, floor = METHOD_COSTS[method].parameter, METHOD_COSTS[method].floor
        assert name is not None
        value = max(floor, _step_count(method, _parameters(method, options)) // 2)
        chosen = getattr(options.parameters, method).model_copy(update={name: value})
        parameters = options.parameters.model_copy(update={method: chosen})
        options = options.model_copy(update={"parameters": parameters})
    for method in options.methods:
        name = METHOD_COSTS[method].parameter
        if name is None:
            continue
        before, after = original[method][name], _parameters(method, options)[name]
        if after != before:
            was = "adaptive" if before is None else before
            reductions.append(f"{method} {name} {was} -> {after}")
    return options, substitutions


def _fewer_targets(
    options: ExplainOptions,
    substitutions: dict[str, str],
    images: int,
    limit: int,
    reductions: list[str],
    size: Size = DIGIT_SIZE,
) -> tuple[ExplainOptions, dict[str, str]]:
    """As many targets per image as fit (at least one): top-k gets a smaller k, explicit
    classes keep the first ones listed."""
    cost = request_cost(options, images, substitutions, size=size)
    if cost.units <= limit or cost.targets <= 1:
        return options, substitutions
    per_target = cost.units / cost.targets
    keep = max(1, min(cost.targets, int(limit // per_target)))
    if options.targets == "top-k":
        reductions.append(f"targets top-{options.k} -> top-{keep}")
        return options.model_copy(update={"k": keep}), substitutions
    assert options.classes is not None
    kept = options.classes[:keep]
    reductions.append(f"classes {options.classes} -> {kept}")
    return options.model_copy(update={"classes": kept}), substitutions


def _cheaper_methods(
    options: ExplainOptions,
    substitutions: dict[str, str],
    images: int,
    limit: int,
    reductions: list[str],
    size: Size = DIGIT_SIZE,
) -> tuple[ExplainOptions, dict[str, str]]:
    """Replace methods by saliency, the most expensive per (image, target) first."""
    substitutions = dict(substitutions)
    cost = request_cost(options, images, substitutions, size=size)
    for method, _ in sorted(cost.per_method.items(), key=lambda item: -item[1]):
        if _units(options, images, substitutions, size) <= limit:
            break
        if method == FALLBACK:
            continue
        for requested in options.methods:
            if substitutions.get(requested, requested) == method:
                substitutions[requested] = FALLBACK
        reductions.append(f"{method} replaced by {FALLBACK}")
    return options, substitutions
