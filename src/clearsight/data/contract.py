"""The data contract: a Great Expectations suite over the per-image profile table.

Run before any training: a failure raises ``DataValidationError`` naming every failed
expectation with what was observed, so a bad batch stops the pipeline with a readable report.
Results are written as JSON and as Great Expectations Data Docs (HTML) under
``data/reports/``. The suite and the reference profile together form the contract; their hash
tags every training run, so a changed contract is visible in MLflow.

The suite is derived from the data's task (``clearsight.task.ImageTask``: shape, channels,
class names), never from MNIST constants; the polarity rule (light ink on a dark background)
only applies when the task is digit-like. The drift rules need a reference profile of the same
dataset: the digits' ships with the project (``data/contract/``); any other dataset's is
recorded by its first run that passes (``versions_dir/references/<HxWxC>-<hash>.json``), and
until then the drift rules are left out with a note in the report.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from clearsight.config import DataSettings, Settings
from clearsight.errors import ConfigurationError, DataValidationError
from clearsight.files import atomic_write
from clearsight.task import DIGITS, ImageTask

if TYPE_CHECKING:
    from great_expectations.core import ExpectationValidationResult

DRIFT_FEATURES = ("mean_intensity", "ink_fraction")
SUITE_NAME = "clearsight-image-contract"
# The polarity rule: a digit's border is background, so at most this share of it is bright.
MAX_BORDER_BRIGHT = 0.5
NO_REFERENCE = (
    "no reference profile for this dataset yet: drift rules skipped (the first run that "
    "passes records one)"
)


@dataclass(frozen=True)
class Outcome:
    """One expectation's verdict, with what was observed in words a person can act on."""

    expectation: str
    column: str
    description: str
    success: bool
    observed: str

    def summary(self) -> str:
        return f"{self.expectation}({self.column}): {self.description}; observed {self.observed}"


@dataclass
class ValidationReport:
    """What the contract decided, and where its JSON and Data Docs were written."""

    success: bool
    outcomes: list[Outcome]
    contract_hash: str
    n_rows: int
    json_path: Path | None = None
    docs_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success]

    def raise_for_failures(self) -> None:
        if not self.success:
            raise DataValidationError(self)

    def to_markdown(self) -> str:
        """The verdict as a Markdown table (Prefect artifact, MLflow artifact)."""
        verdict = "passed" if self.success else f"FAILED ({len(self.failures)} expectations)"
        lines = [
            f"# Data contract {verdict}",
            "",
            f"{self.n_rows} images, contract `{self.contract_hash[:16]}`, report "
            f"`{self.json_path}`",
            "",
            *[f"Note: {note}" for note in self.extra.get("notes", [])],
            *([""] if self.extra.get("notes") else []),
            "| result | expectation | column | rule | observed |",
            "|---|---|---|---|---|",
        ]
        for o in sorted(self.outcomes, key=lambda o: o.success):
            mark = "pass" if o.success else "**FAIL**"
            lines.append(
                f"| {mark} | {o.expectation} | {o.column} | {o.description} | {o.observed} |"
            )
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["json_path"] = str(self.json_path) if self.json_path else None
        data["docs_path"] = str(self.docs_path) if self.docs_path else None
        return data


# --- reference profile -------------------------------------------------------------------


def build_reference(profile: pd.DataFrame, origin: str) -> dict[str, Any]:
    """Summarise the features the drift checks compare against."""
    features = {}
    # Under 1,000 images the 0.1 % tails hold less than one image: no quantile to estimate,
    # and the reference's own extremes would fall outside it. The range is then min to max.
    tail = 0.001 if len(profile) >= 1000 else 0.0
    for name in DRIFT_FEATURES:
        col = profile[name].to_numpy(np.float64)
        features[name] = {
            "mean": float(np.mean(col)),
            "std": float(np.std(col)),
            "q001": float(np.quantile(col, tail)),
            "q999": float(np.quantile(col, 1 - tail)),
        }
    return {"origin": origin, "n_images": len(profile), "features": features}


def reference_key(task: ImageTask) -> str:
    """``28x28x1-1a2b3c4d5e6f``: the dataset's shape and a hash of its class names."""
    names = hashlib.sha256(json.dumps(list(task.class_names)).encode()).hexdigest()[:12]
    return f"{task.height}x{task.width}x{task.channels}-{names}"


def uses_shipped_reference(task: ImageTask) -> bool:
    """The digits' shape and classes: the reference profile that ships with the project."""
    return task.input_shape == DIGITS.input_shape and task.class_names == DIGITS.class_names


def reference_path(settings: Settings, task: ImageTask) -> Path:
    """Where the reference profile of ``task``'s dataset is (or will be) kept."""
    if uses_shipped_reference(task):
        return settings.reference_profile_path
    assert settings.versions_dir is not None  # resolved by Settings
    return settings.versions_dir / "references" / f"{reference_key(task)}.json"


def reference_for(settings: Settings, task: ImageTask) -> dict[str, Any] | None:
    """The dataset's reference profile; None for a new dataset that has none yet (the digits'
    must exist: it ships with the project)."""
    path = reference_path(settings, task)
    if uses_shipped_reference(task) or path.is_file():
        return load_reference(path)
    return None


def record_reference(
    settings: Settings, task: ImageTask, profile: pd.DataFrame, origin: str
) -> Path | None:
    """Record the reference of a dataset that has none, from a profile that passed (every
    split, as ``clearsight data reference`` does); returns the file written, None when one
    already exists (never replaced: the drift rules compare later data with the first)."""
    path = reference_path(settings, task)
    if path.is_file():
        return None
    body = build_reference(profile, origin) | {"task": task.to_metadata()}
    text = json.dumps(body, indent=2) + "\n"
    atomic_write(path, lambda h: h.write(text.encode()), ".json")
    return path


def load_reference(path: Path) -> dict[str, Any]:
    try:
        reference: dict[str, Any] = json.loads(path.read_text())
        return reference
    except FileNotFoundError:
        raise ConfigurationError(
            f"{path}: no reference profile; create one with `clearsight data reference`"
        ) from None


# --- the suite ---------------------------------------------------------------------------


def expectation_specs(
    settings: DataSettings, reference: dict[str, Any] | None, *, task: ImageTask
) -> list[dict[str, Any]]:
    """The contract as plain data: (GE expectation class, kwargs, why it exists).

    Kept as data so the contract hash is stable and the suite is easy to read in one place.
    ``task`` is what the data must be (shape, channels, classes); ``reference`` None leaves
    the drift rules out (a dataset with no reference profile yet).
    """
    share = 1.0 / task.n_classes
    tol = settings.class_balance_tolerance
    last = task.n_classes - 1
    labels_why = (
        "labels are digits 0-9"
        if task.class_names == DIGITS.class_names
        else f"labels are class indices 0-{last} ({task.class_names[0]} ... {task.class_names[-1]})"
    )
    colour = "grey" if task.channels == 1 else "colour"
    specs: list[dict[str, Any]] = [
        {
            "type": "ExpectColumnValuesToBeInSet",
            "column": "label",
            "value_set": list(range(task.n_classes)),
            "why": labels_why,
        },
        {
            "type": "ExpectColumnValuesToBeInSet",
            "column": "height",
            "value_set": [task.height],
            "why": f"every image is {task.height} px high",
        },
        {
            "type": "ExpectColumnValuesToBeInSet",
            "column": "width",
            "value_set": [task.width],
            "why": f"every image is {task.width} px wide",
        },
        {
            "type": "ExpectColumnValuesToBeInSet",
            "column": "channels",
            "value_set": [task.channels],
            "why": f"every image has {task.channels} channel(s) ({colour})",
        },
        {
            "type": "ExpectColumnValuesToBeBetween",
            "column": "nan_count",
            "min_value": 0,
            "max_value": 0,
            "why": "no NaN pixels",
        },
        {
            "type": "ExpectColumnValuesToBeBetween",
            "column": "min",
            "min_value": 0,
            "max_value": 255,
            "why": "pixels within 0-255",
        },
        {
            "type": "ExpectColumnValuesToBeBetween",
            "column": "max",
            "min_value": 0,
            "max_value": 255,
            "why": "pixels within 0-255",
        },
        {
            "type": "ExpectColumnValuesToBeBetween",
            "column": "class_share",
            "min_value": round(share * (1 - tol), 6),
            "max_value": round(share * (1 + tol), 6),
            "why": f"each class holds {share:.0%} of its split within ±{tol:.0%}",
        },
        {
            "type": "ExpectColumnValuesToBeUnique",
            "column": "split_content_hash",
            "why": "no duplicate images within a split",
        },
        {
            "type": "ExpectColumnValuesToBeInSet",
            "column": "holdout_leak",
            "value_set": [0],
            "why": "no holdout image also in train or validation",
        },
    ]
    if task.digit_like:
        specs.append(
            {
                "type": "ExpectColumnValuesToBeBetween",
                "column": "border_bright",
                "min_value": 0.0,
                "max_value": MAX_BORDER_BRIGHT,
                "mostly": settings.drift_mostly,
                "why": f"{settings.drift_mostly:.0%} of images are light ink on a dark "
                f"background (at most {MAX_BORDER_BRIGHT:.0%} of the border bright)",
            }
        )
    if reference is None:
        return specs
    drift_tol = settings.drift_tolerance
    for name in DRIFT_FEATURES:
        ref = reference["features"][name]
        specs.append(
            {
                "type": "ExpectColumnMeanToBeBetween",
                "column": name,
                "min_value": round(ref["mean"] * (1 - drift_tol), 6),
                "max_value": round(ref["mean"] * (1 + drift_tol), 6),
                "why": f"mean {name} within ±{drift_tol:.0%} of the reference ({ref['mean']:.4g})",
            }
        )
        specs.append(
            {
                "type": "ExpectColumnValuesToBeBetween",
                "column": name,
                "min_value": _outward(ref["q001"], math.floor),
                "max_value": _outward(ref["q999"], math.ceil),
                "mostly": settings.drift_mostly,
                "why": f"{settings.drift_mostly:.0%} of images have {name} within the "
                "reference's 0.1-99.9% range",
            }
        )
    return specs


def _outward(value: float, direction: Callable[[float], int]) -> float:
    """A bound to 6 decimals, rounded away from the range's inside (``math.floor`` for a
    minimum, ``math.ceil`` for a maximum), so the reference's own extremes stay inside."""
    return direction(value * 1e6) / 1e6


# Rules about a whole set (class shares, mean features): meaningless for a batch of a few
# images checked on its own, so ``check_contract(..., per_image=True)`` leaves them out.
SET_LEVEL_COLUMNS = frozenset({"class_share"})
SET_LEVEL_TYPES = frozenset({"ExpectColumnMeanToBeBetween"})


def is_set_level(spec: dict[str, Any]) -> bool:
    """Whether a rule judges the set as a whole rather than each image."""
    return spec["column"] in SET_LEVEL_COLUMNS or spec["type"] in SET_LEVEL_TYPES


def contract_hash(specs: list[dict[str, Any]]) -> str:
    """sha256 of the suite definition (thresholds and reference bounds included)."""
    return hashlib.sha256(json.dumps(specs, sort_keys=True).encode()).hexdigest()


def _short(value: Any) -> str:
    """Numbers to 4 significant digits, long hashes to 12 characters."""
    if isinstance(value, float | np.floating):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 24 else text[:21] + "..."


def observed_phrase(result: dict[str, Any]) -> str:
    """Turn a GE result dict into a short phrase: the value, or the unexpected examples."""
    if result.get("observed_value") is not None:
        value = result["observed_value"]
        return _short(value)
    count = result.get("unexpected_count")
    if count is None:
        return "no result"
    if not count:
        return "all values as expected"
    examples = sorted({_short(v) for v in result.get("partial_unexpected_list") or []})[:3]
    pct = result.get("unexpected_percent") or 0.0
    return f"{count} rows ({pct:.2f}%) e.g. {', '.join(examples)}"


def _silence_gx_progress(context: Any) -> None:
    """GE prints a tqdm bar per validation; a pipeline log does not need it."""
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False)


def check_contract(
    profile: pd.DataFrame,
    settings: DataSettings,
    reference: dict[str, Any] | None,
    report_dir: Path | None = None,
    *,
    task: ImageTask,
    per_image: bool = False,
) -> ValidationReport:
    """Validate the profile table against ``task``; write JSON + Data Docs when ``report_dir``
    is given.

    ``per_image``: only the rules each image must meet on its own (an incoming batch of one
    image cannot be class-balanced; the merged set is checked with every rule). ``reference``
    None: no drift rules, and the report says so (``extra["notes"]``).
    """
    import great_expectations as gx
    from great_expectations.checkpoint.actions import UpdateDataDocsAction, ValidationAction

    specs = expectation_specs(settings, reference, task=task)
    if per_image:
        specs = [spec for spec in specs if not is_set_level(spec)]
    context = gx.get_context(mode="ephemeral")
    _silence_gx_progress(context)
    site = None
    if report_dir is not None:
        site = str(report_dir.parent / "data_docs")
        context.add_data_docs_site(
            site_name="clearsight",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": site,
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    batch = (
        context.data_sources.add_pandas("profile")
        .add_dataframe_asset("images")
        .add_batch_definition_whole_dataframe("all images")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=SUITE_NAME))
    spec_by_id: dict[str | None, dict[str, Any]] = {}
    for spec in specs:
        kwargs = {k: v for k, v in spec.items() if k not in ("type", "why")}
        expectation_cls = getattr(gx.expectations, spec["type"])
        added = suite.add_expectation(expectation_cls(**kwargs, description=spec["why"]))
        spec_by_id[added.id] = spec
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="contract", data=batch, suite=suite)
    )
    actions: list[ValidationAction] = [UpdateDataDocsAction(name="docs", site_names=["clearsight"])]
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="gate",
            validation_definitions=[definition],
            actions=actions if site else [],
            result_format="SUMMARY",
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": profile})
    (suite_result,) = run.run_results.values()
    outcomes = [_outcome(result, spec_by_id) for result in suite_result.results]
    report = ValidationReport(
        success=bool(run.success),
        outcomes=outcomes,
        contract_hash=contract_hash(specs),
        n_rows=len(profile),
        extra={"task": task.to_metadata(), "notes": [] if reference else [NO_REFERENCE]},
    )
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        report.json_path = report_dir / "validation.json"
        report.docs_path = Path(site) / "index.html" if site else None
        gx_result = suite_result.to_json_dict()  # type: ignore[no-untyped-call]  # GX leaves it unannotated
        payload = {"report": report.to_dict(), "great_expectations": gx_result}
        report.json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        profile.to_csv(report_dir / "profile.csv", index=False)
    return report


def report_folder(reports_dir: Path) -> Path:
    """A new timestamped folder for one validation's outputs."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return reports_dir / "validation" / stamp


def _outcome(
    result: ExpectationValidationResult, spec_by_id: dict[str | None, dict[str, Any]]
) -> Outcome:
    """One GX result in our words; the contract's own "why" is its description."""
    config = result.expectation_config
    assert config is not None, "GX returns each result of a suite run with its expectation"
    return Outcome(
        expectation=config.type,
        column=str(config.kwargs.get("column")),
        description=spec_by_id[config.id]["why"],
        success=bool(result.success),
        observed=observed_phrase(result.result),
    )
