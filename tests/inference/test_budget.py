"""The explanation budget: what a request costs, when it is refused, and how it is reduced."""

from __future__ import annotations

import pytest

from clearsight.choices import METHOD_NAMES
from clearsight.errors import RequestError
from clearsight.inference.budget import (
    ExplainBudget,
    method_units,
    occlusion_windows,
    plan,
    request_cost,
)
from clearsight.inference.schemas import MAX_IMAGES_PER_REQUEST, ExplainOptions


def options(**fields) -> ExplainOptions:
    return ExplainOptions.model_validate(fields)


def everything() -> ExplainOptions:
    """Every method at its largest parameters, every class: the most a request can ask."""
    return options(
        methods=list(METHOD_NAMES),
        targets="explicit",
        classes=list(range(10)),
        parameters={
            "integrated_gradients": {"steps": 256},
            "smoothgrad": {"samples": 128},
            "occlusion": {"window": 1, "stride": 1},
            "shap": {"nsamples": 500},
        },
    )


def test_units_follow_each_methods_evaluations() -> None:
    assert method_units("saliency") == method_units("grad_cam") == 1
    assert method_units("integrated_gradients", {"steps": 32}) == 33  # trapezoid: steps + 1
    assert method_units("integrated_gradients", {"steps": 8}) == 9
    assert method_units("smoothgrad", {"samples": 16}) == 16
    assert occlusion_windows(4, 2) == 13 * 13
    assert method_units("occlusion", {"window": 4, "stride": 2}) == 0.5 * 169
    assert method_units("shap", {"nsamples": 50}) == 300
    # Parameters not given take the library function's defaults.
    assert method_units("integrated_gradients") == 32  # adaptive: its max_evaluations
    assert method_units("integrated_gradients", {"steps": None, "max_evaluations": 20}) == 20


def test_request_cost_is_images_times_targets_times_methods() -> None:
    default = request_cost(ExplainOptions(), 1)
    assert default.units == 33  # IG adaptive (at most 32 evaluations) + Grad-CAM
    assert request_cost(ExplainOptions(), 64).units == 64 * 33
    top3 = request_cost(options(targets="top-k", k=3, methods=["saliency"]), 5)
    assert top3.units == 5 * 3 * 1
    # A method that substitutions send several requests to runs (and counts) once.
    subs = {"shap": "saliency", "occlusion": "saliency"}
    cost = request_cost(options(methods=["shap", "occlusion", "saliency"]), 2, subs)
    assert cost.per_method == {"saliency": 1} and cost.units == 2


def test_within_the_limit_nothing_changes() -> None:
    asked = ExplainOptions()
    result = plan(asked, 64, ExplainBudget(4096, "refuse"))
    assert result.options == asked and not result.reductions and not result.substitutions
    assert result.units == result.requested_units == 64 * 33


def test_refuse_names_the_limit_the_cost_and_a_way_under_it() -> None:
    with pytest.raises(RequestError) as caught:
        plan(ExplainOptions(), 64, ExplainBudget(1000, "refuse"))
    err = caught.value
    assert err.status == 422 and err.code == "over_budget"
    assert "1,000" in err.message and "2,112 units" in err.message
    assert "at most 30 image(s)" in err.message  # 30 x 33 = 990 <= 1000
    assert err.detail[0]["limit"] == 1000 and err.detail[0]["units"] == 2112


def test_degrade_first_halves_steps_down_to_the_floor() -> None:
    asked = options(parameters={"integrated_gradients": {"steps": 256}})  # IG 257 + 1 per image
    result = plan(asked, 10, ExplainBudget(1000, "degrade"))
    assert result.reductions == ["integrated_gradients steps 256 -> 64"]  # 10 x 66 = 660
    assert result.options.parameters.integrated_gradients.steps == 64
    assert result.units <= 1000 < result.requested_units
    assert result.options.methods == asked.methods and not result.substitutions


def test_degrade_then_cuts_targets_then_methods_most_expensive_first() -> None:
    result = plan(everything(), MAX_IMAGES_PER_REQUEST, ExplainBudget(4096, "degrade"))
    assert result.units <= 4096 < result.requested_units
    steps = [r.split()[0] for r in result.reductions]
    # Steps first (all at their floors), then targets, then methods, the costliest first.
    assert result.reductions[:3] == [
        "integrated_gradients steps 256 -> 16",
        "smoothgrad samples 128 -> 8",
        "shap nsamples 500 -> 10",
    ]
    assert result.reductions[3] == "classes [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] -> [0]"
    assert steps[4:] == ["occlusion", "shap", "integrated_gradients"][: len(steps) - 4]
    assert all(r.endswith("replaced by saliency") for r in result.reductions[4:])
    assert set(result.substitutions.values()) == {"saliency"}


def test_degrade_always_fits_the_smallest_limit() -> None:
    result = plan(everything(), MAX_IMAGES_PER_REQUEST, ExplainBudget(64, "degrade"))
    assert result.units == 64  # 64 images x saliency x one target
    assert set(result.substitutions) == set(METHOD_NAMES) - {"saliency"}


def test_top_k_keeps_the_most_probable_classes() -> None:
    asked = options(methods=["saliency"], targets="top-k", k=5)
    result = plan(asked, 64, ExplainBudget(200, "degrade"))
    assert result.options.k == 3 and result.reductions == ["targets top-5 -> top-3"]
