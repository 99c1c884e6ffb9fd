"""How far to trust the explanations: measured, per method, on a panel of images.

- completeness (integrated gradients): attributions should sum to f(x) - f(baseline);
- deletion / insertion AUC (Petsiuk et al. 2018): removing the most important pixels first
  should make the target probability fall fast (low deletion AUC) and inserting them first
  should make it rise fast (high insertion AUC), against a random pixel order and a Sobel
  edge map (Adebayo et al. 2018 found edge detectors look like many saliency maps), under
  several fills so no single "missing pixel" value decides;
- model randomisation (Adebayo et al. 2018): on a clone whose weights are re-initialised from
  the top layer down, maps should stop resembling the trained model's maps;
- stability: small input noise should change the maps little.

``quality_report`` runs them all with affordable defaults and returns flat metric names for
``mlflow.log_metrics`` plus a Markdown table for an artifact.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import keras
import numpy as np

from clearsight.choices import QUALITY_METHODS
from clearsight.explain.attribution import Attribution
from clearsight.explain.catalogue import Polarity, explain, get_method
from clearsight.explain.gradients import (
    PROBABILITIES,
    ModelGradients,
    as_model_input,
    model_gradients,
)
from clearsight.explain.methods import in_image_chunks, pick
from clearsight.explain.targets import TargetSpec
from clearsight.quality_metrics import (
    BASELINES,
    COMPLETENESS_GAP_MEDIAN,
    RANDOM,
    SOBEL,
    QualityMetrics,
    deletion_auc,
    insertion_auc,
    randomization_spearman,
)

Fill = Literal["zero", "blur", "mean"]
DEFAULT_FILLS: tuple[Fill, ...] = ("zero", "blur")


# -- perturbation curves -------------------------------------------------------------------
def fill_images(x: np.ndarray, fill: Fill, blur_sigma: float = 3.0) -> np.ndarray:
    """What a removed pixel becomes: black, a blurred copy of the image, or the panel's mean."""
    if fill == "zero":
        return np.zeros_like(x)
    if fill == "blur":
        blurred = [cv2.GaussianBlur(image, (0, 0), blur_sigma) for image in x]
        return np.stack(blurred).reshape(x.shape).astype(np.float32)
    if fill == "mean":
        return np.broadcast_to(x.mean(axis=0, keepdims=True), x.shape).astype(np.float32)
    raise ValueError(f"fill must be 'zero', 'blur' or 'mean', got {fill!r}")


def oriented(maps: np.ndarray, polarity: Polarity) -> np.ndarray:
    """The map whose larger values mean "more important" under ``polarity``."""
    if polarity in ("positive", "signed"):
        return maps
    if polarity == "negative":
        return -maps
    if polarity == "absolute":
        return np.abs(maps)
    raise ValueError(f"unknown polarity {polarity!r}")


def importance_ranks(scores: np.ndarray, seed: int = 0) -> np.ndarray:
    """Rank of every pixel per row (0 = most important); ties in random (seeded) order."""
    flat = scores.reshape(len(scores), -1)
    tiebreak = np.random.default_rng(seed).random(flat.shape)
    order = np.lexsort((tiebreak, -flat), axis=-1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None, :], axis=-1)
    return ranks


def sobel_magnitude(x: np.ndarray) -> np.ndarray:
    """Edge strength (M, H, W) of each image: the model-free baseline ordering. On colour
    images each pixel takes its strongest channel's edge, so a red-green border counts even
    where the brightness does not change."""
    images = np.asarray(x, np.float32)
    images = images if images.ndim == 4 else images[..., None]
    channels = [
        np.hypot(cv2.Sobel(c, cv2.CV_32F, 1, 0), cv2.Sobel(c, cv2.CV_32F, 0, 1))
        for c in np.moveaxis(images, -1, 0).reshape(-1, *images.shape[1:3])
    ]
    per_channel = np.stack(channels).reshape(images.shape[-1], *images.shape[:3])
    edges: np.ndarray = per_channel.max(axis=0)
    return edges


@dataclass(frozen=True)
class Curves:
    """Target probability after removing (deletion) or keeping (insertion) the top fractions."""

    fractions: np.ndarray  # (S + 1,) from 0 to 1
    deletion: np.ndarray  # (M, S + 1)
    insertion: np.ndarray  # (M, S + 1)

    @property
    def deletion_auc(self) -> np.ndarray:
        auc: np.ndarray = np.trapezoid(self.deletion, self.fractions, axis=1)
        return auc

    @property
    def insertion_auc(self) -> np.ndarray:
        auc: np.ndarray = np.trapezoid(self.insertion, self.fractions, axis=1)
        return auc


def perturbation_curves(
    gradients: ModelGradients,
    x: np.ndarray,
    targets: np.ndarray,
    ranks: np.ndarray,
    fill: np.ndarray,
    steps: int = 16,
    output: str = PROBABILITIES,
) -> Curves:
    """Deletion and insertion curves of rows ``x`` (M, H, W, C) in ``steps`` equal steps.

    ``ranks`` (M, H*W) orders pixels (0 first); ``fill`` (M, H, W, C) replaces removed pixels.
    Every step of every row is one image in the same batched forward passes.
    """
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.rint(fractions * ranks.shape[1]).astype(int)
    n_points = len(counts)

    def curves(part: slice) -> tuple[np.ndarray, np.ndarray]:
        top = ranks[part, None, :] < counts[None, :, None]  # (m, S+1, P)
        top = top.reshape(*top.shape[:2], *x.shape[1:3], 1)
        xs, fills = x[part, None], fill[part, None]
        deleted, inserted = np.where(top, fills, xs), np.where(top, xs, fills)
        m = len(top)
        batch = np.concatenate([deleted, inserted]).reshape(2 * m * n_points, *x.shape[1:])
        both = np.tile(np.repeat(targets[part], n_points), 2)
        probs = pick(gradients.scores(batch, output), both).reshape(2, m, n_points)
        return probs[0], probs[1]

    parts = in_image_chunks(len(x), 2 * n_points, curves)
    deletion = np.concatenate([p[0] for p in parts])
    insertion = np.concatenate([p[1] for p in parts])
    return Curves(fractions, deletion, insertion)


# -- rank agreement ------------------------------------------------------------------------
def attribution_curves(
    model: keras.Model,
    x: np.ndarray,
    attribution: Attribution,
    polarity: Polarity,
    fill: Fill = "zero",
    steps: int = 16,
    seed: int = 0,
) -> Curves:
    """Deletion and insertion curves of each row of ``attribution`` (computed on ``x``).

    Pixels are ordered by the map under ``polarity`` and replaced by ``fill``: the one call
    behind every deletion/insertion number (run reports, promotion, one image on the CLI).
    """
    xs = as_model_input(x)[attribution.image_index]
    ranks = importance_ranks(oriented(attribution.maps, polarity), seed)
    return perturbation_curves(
        model_gradients(model), xs, attribution.targets, ranks, fill_images(xs, fill), steps
    )


def spearman_rows(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Signed Spearman correlation per row between maps a and b, over ``mask`` pixels.

    A map that is constant on the mask (e.g. a Grad-CAM map that a random model zeroes out)
    keeps no ranking of the original: its correlation is reported as 0, not NaN.
    """
    from scipy import stats  # here, not at the top: 1 s of a one-image `clearsight explain`

    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    mask = np.ones_like(a, bool) if mask is None else mask.reshape(len(a), -1)
    rho = np.zeros(len(a))
    for row, (u, v, keep) in enumerate(zip(a, b, mask, strict=True)):
        u, v = u[keep], v[keep]
        if len(u) < 3 or np.ptp(u) == 0 or np.ptp(v) == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.ConstantInputWarning)
            rho[row] = stats.spearmanr(u, v).statistic
    return rho


def relative_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """||a - b|| / ||a|| per row (0 when a is all zeros and b equals it)."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    ratio: np.ndarray = np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(a, axis=1), 1e-12)
    return ratio


# -- model randomisation -------------------------------------------------------------------
def weighted_layers_top_down(model: keras.Model) -> list[str]:
    """Layers with weights, output side first: the cascading randomisation order."""
    return [layer.name for layer in reversed(model.layers) if layer.weights]


def reinitialize(layer: keras.layers.Layer, seed: int) -> None:
    """Draw the layer's weights afresh from its own initialisers (seeded), in place."""
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        initializer = getattr(layer, f"{variable.name}_initializer", None)
        if initializer is None:
            current = keras.ops.convert_to_numpy(variable)
            value = rng.normal(0.0, float(current.std()) or 1.0, variable.shape)
        else:
            config = initializer.get_config()
            if "seed" in config:
                config["seed"] = int(rng.integers(2**31))
                initializer = type(initializer).from_config(config)
            value = initializer(variable.shape, dtype=variable.dtype)
        variable.assign(keras.ops.cast(value, variable.dtype))


def clone_with_weights(model: keras.Model) -> keras.Model:
    """An independent copy (same architecture and weights): randomise it, never the original."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def randomization_correlations(
    model: keras.Model,
    x: np.ndarray,
    originals: Mapping[str, Attribution],
    params: Mapping[str, dict[str, Any]] | None = None,
    *,
    seed: int = 0,
    ink_threshold: float = 0.0,
) -> dict[str, dict[str, np.ndarray]]:
    """Cascading model randomisation: method -> {layer randomised down to -> Spearman per row}.

    Layers are re-initialised on a clone one after another from the top; after each, every
    method explains the same (image, target) rows again and is compared with its original map
    on the digit's pixels (input > ``ink_threshold`` in any channel).
    """
    params, x = params or {}, as_model_input(x)
    clone = clone_with_weights(model)
    result: dict[str, dict[str, np.ndarray]] = {name: {} for name in originals}
    for depth, layer in enumerate(weighted_layers_top_down(clone)):
        reinitialize(clone.get_layer(layer), seed + depth)
        for name, original in originals.items():
            again = explain(clone, x, name, original.targets_per_image, **params.get(name, {}))
            ink = x[original.image_index].max(axis=-1) > ink_threshold
            result[name][layer] = spearman_rows(original.maps, again.maps, ink)
    return result


# -- the report ----------------------------------------------------------------------------
@dataclass(frozen=True)
class QualityReport:
    """Aggregate quality numbers per method (by name, plus "random" and "sobel")."""

    sections: dict[str, dict[str, float]]
    n_images: int
    fills: tuple[str, ...]
    layers: tuple[str, ...]
    params: dict[str, Any]
    elapsed_s: float
    per_row: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def quality(self) -> QualityMetrics:
        """The aggregate numbers as the record the run, the card and the policy read."""
        return QualityMetrics(self.sections, self.n_images)

    @property
    def metrics(self) -> dict[str, float]:
        """Flat ``explain_<method>_<metric>`` names, ready for ``mlflow.log_metrics``."""
        return self.quality.flat()

    def to_markdown(self) -> str:
        """Tables for a run artifact: faithfulness, sanity, stability and cost."""
        groups = {
            "Faithfulness (deletion AUC: lower is better; insertion AUC: higher is better)": [
                name(fill) for fill in self.fills for name in (deletion_auc, insertion_auc)
            ],
            "Sanity: Spearman with the trained model's maps on the digit after randomising "
            "the layers down to (near 0 is good)": [
                randomization_spearman(layer) for layer in self.layers
            ],
            "Stability under input noise, completeness, cost": [
                "stability_spearman_median",
                "stability_rel_l2_median",
                COMPLETENESS_GAP_MEDIAN,
                "completeness_gap_p90",
                "seconds_per_image",
            ],
        }
        lines = [f"# Explanation quality ({self.n_images} images, {self.elapsed_s:.1f} s)", ""]
        for title, columns in groups.items():
            rows = [m for m, numbers in self.sections.items() if set(columns) & set(numbers)]
            if not rows:
                continue
            lines += [f"## {title}", "", "| method | " + " | ".join(columns) + " |"]
            lines.append("|---" * (len(columns) + 1) + "|")
            for method in rows:
                cells = [_cell(self.sections[method].get(c)) for c in columns]
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            lines.append("")
        lines.append(f"Parameters: `{self.params}`")
        return "\n".join(lines) + "\n"


def _cell(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.4f}"


def _faithfulness(
    gradients: ModelGradients,
    xs: np.ndarray,
    targets: np.ndarray,
    orderings: Mapping[str, np.ndarray],
    fills: Sequence[Fill],
    steps: int,
) -> dict[str, dict[str, float]]:
    """Mean deletion/insertion AUC per ordering and fill, and each method's gain over the
    "random" and "sobel" orderings (positive = better than the baseline)."""
    sections: dict[str, dict[str, float]] = {name: {} for name in orderings}
    for fill in fills:
        filled = fill_images(xs, fill)
        aucs = {}
        for name, ranks in orderings.items():
            curves = perturbation_curves(gradients, xs, targets, ranks, filled, steps)
            aucs[name] = (curves.deletion_auc, curves.insertion_auc)
            sections[name][deletion_auc(fill)] = float(curves.deletion_auc.mean())
            sections[name][insertion_auc(fill)] = float(curves.insertion_auc.mean())
        for name in orderings.keys() - BASELINES:
            deletion, insertion = aucs[name]
            for base in BASELINES:
                gain_del = float((aucs[base][0] - deletion).mean())
                gain_ins = float((insertion - aucs[base][1]).mean())
                sections[name][f"deletion_gain_vs_{base}_{fill}"] = gain_del
                sections[name][f"insertion_gain_vs_{base}_{fill}"] = gain_ins
    return sections


def quality_report(
    model: keras.Model,
    x: np.ndarray,
    *,
    methods: Sequence[str] = QUALITY_METHODS,
    targets: TargetSpec = "predicted",
    method_params: Mapping[str, dict[str, Any]] | None = None,
    fills: Sequence[Fill] = DEFAULT_FILLS,
    steps: int = 16,
    noise: float = 0.02,
    randomize: bool = True,
    seed: int = 0,
) -> QualityReport:
    """Explain a panel ``x`` with every method and measure the explanations.

    The defaults (5 methods, 2 fills, 16 deletion steps, 3 randomised layers) cost a few
    seconds for 32 digits on two CPU cores under TensorFlow; SHAP can be added to
    ``methods`` at a price. ``method_params`` maps a method name to keyword arguments for it,
    e.g. ``{"integrated_gradients": {"steps": 64}}``. ``x`` is never modified, nor is the model
    (randomisation works on a clone).
    """
    start = time.perf_counter()
    x = as_model_input(x)
    gradients = model_gradients(model)
    specs = [get_method(m) for m in methods]
    given = method_params or {}
    params = {s.name: dict(given.get(s.name, {})) for s in specs}
    attributions = {s.name: explain(model, x, s.name, targets, **params[s.name]) for s in specs}
    first = next(iter(attributions.values()))  # every method explains the same rows
    xs, row_targets = x[first.image_index], first.targets
    sections: dict[str, dict[str, float]] = {s.name: {} for s in specs}
    per_row: dict[str, dict[str, np.ndarray]] = {s.name: {} for s in specs}

    for spec in specs:
        att, numbers = attributions[spec.name], sections[spec.name]
        numbers["seconds_per_image"] = att.elapsed_s / len(x)
        if att.completeness_gap is not None:
            gap = att.completeness_gap
            numbers[COMPLETENESS_GAP_MEDIAN] = float(np.median(gap))
            numbers["completeness_gap_p90"] = float(np.percentile(gap, 90))
            numbers["completeness_gap_max"] = float(gap.max())
            per_row[spec.name]["completeness_gap"] = gap

    orderings = {
        s.name: importance_ranks(oriented(attributions[s.name].maps, s.ranking), seed)
        for s in specs
    }
    orderings[RANDOM] = importance_ranks(np.random.default_rng(seed).random(xs.shape[:3]))
    orderings[SOBEL] = importance_ranks(sobel_magnitude(xs), seed)
    for name, numbers in _faithfulness(gradients, xs, row_targets, orderings, fills, steps).items():
        sections.setdefault(name, {}).update(numbers)

    noise_draw = np.random.default_rng(seed + 1).standard_normal(x.shape)
    noisy = np.clip(x + noise * noise_draw, 0.0, 1.0).astype(np.float32)
    for spec in specs:
        att = attributions[spec.name]
        again = explain(model, noisy, spec.name, att.targets_per_image, **params[spec.name])
        rho, rel = spearman_rows(att.maps, again.maps), relative_l2(att.maps, again.maps)
        sections[spec.name]["stability_spearman_median"] = float(np.median(rho))
        sections[spec.name]["stability_rel_l2_median"] = float(np.median(rel))
        per_row[spec.name] |= {"stability_spearman": rho, "stability_rel_l2": rel}

    layers: tuple[str, ...] = ()
    if randomize:
        layers = tuple(weighted_layers_top_down(model))
        by_layer = randomization_correlations(model, x, attributions, params, seed=seed)
        for spec in specs:
            for layer, rho in by_layer[spec.name].items():
                sections[spec.name][randomization_spearman(layer)] = float(np.median(rho))
                per_row[spec.name][f"randomization_spearman_{layer}"] = rho

    settings = {
        "fills": list(fills),
        "steps": steps,
        "noise": noise,
        "seed": seed,
        "targets": targets if isinstance(targets, str | int) else "explicit",
        "method_params": params,
    }
    return QualityReport(
        sections=sections,
        n_images=len(x),
        fills=tuple(fills),
        layers=layers,
        params=settings,
        elapsed_s=time.perf_counter() - start,
        per_row=per_row,
    )
