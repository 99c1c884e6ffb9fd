"""Running statistics of a data version's profile, and the contract judged from them.

Checking a batch merged into a data version used to profile the whole merged set and run the
Great Expectations suite over every row: each batch cost as much as all the data before it,
so ingest grew quadratically. Every rule of the contract, though, is a sum over rows:

- a per-image rule (labels 0-9, 28x28, pixels 0-255, no NaN, features within the reference's
  range, with its ``mostly`` share) needs how many rows break it and how many have a value;
- class balance needs the count per label; a mean-feature rule needs a sum and a count;
- duplicates and holdout leakage only concern the new rows (old-only duplicates are not the
  batch's doing) and are looked up in the version's hash index (``version_index``).

So a version keeps a ``RunningProfile`` (a few numbers per rule), the next one is the old one
plus the batch's rows, and ``merged_report`` judges the same ``expectation_specs`` with the
same verdicts, observed values and report as Great Expectations would on the full merged
table (tests/data/test_ingest_linear.py compares the two). The statistics depend on the per-image
rules' bounds (from the reference profile), so they carry a ``signature`` of those: when the
reference changes, they are recomputed once from the version's full data.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from clearsight.data.contract import Outcome, ValidationReport, contract_hash, observed_phrase

# Columns that only exist for the merged check: computed from counts and the hash index.
CLASS_SHARE = "class_share"
DUPLICATE_KEY = "split_content_hash"
HOLDOUT_LEAK = "holdout_leak"
MERGED_ONLY = frozenset({CLASS_SHARE, DUPLICATE_KEY, HOLDOUT_LEAK})
MEAN_RULE = "ExpectColumnMeanToBeBetween"
EXAMPLES = 20  # Great Expectations' partial_unexpected_list holds the first 20


def rule_key(spec: dict[str, Any]) -> str:
    return f"{spec['type']}:{spec['column']}"


def row_rules(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-row rules whose counts a version carries (not the merged-only columns)."""
    return [s for s in specs if s["column"] not in MERGED_ONLY and s["type"] != MEAN_RULE]


def mean_columns(specs: list[dict[str, Any]]) -> list[str]:
    return [s["column"] for s in specs if s["type"] == MEAN_RULE]


def signature(specs: list[dict[str, Any]]) -> str:
    """What the counts depend on: each row rule's column, kind and bounds (not ``mostly``,
    which only changes the verdict)."""
    bounds = [
        {k: v for k, v in s.items() if k not in ("why", "mostly")} for s in row_rules(specs)
    ] + [{"mean": c} for c in mean_columns(specs)]
    return hashlib.sha256(json.dumps(bounds, sort_keys=True).encode()).hexdigest()


def _breaks(spec: dict[str, Any], values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(rows that have a value, rows that break the rule), as Great Expectations counts them:
    missing values (NaN) are neither expected nor unexpected."""
    present = values.notna().to_numpy()
    if spec["type"] == "ExpectColumnValuesToBeInSet":
        inside = values.isin(spec["value_set"]).to_numpy()
    elif spec["type"] == "ExpectColumnValuesToBeBetween":
        inside = values.between(spec["min_value"], spec["max_value"]).to_numpy()
    else:
        raise ValueError(f"no running count for {spec['type']}")
    return present, present & ~inside


@dataclass(frozen=True)
class RunningProfile:
    """Sums over every row of a data version's profile (see the module docstring)."""

    signature: str
    n_rows: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)  # rule -> rows with a value
    unexpected: dict[str, int] = field(default_factory=dict)  # rule -> rows that break it
    examples: dict[str, list[Any]] = field(default_factory=dict)  # rule -> first 20 of them
    sums: dict[str, float] = field(default_factory=dict)  # mean column -> sum of values
    counts: dict[str, int] = field(default_factory=dict)  # mean column -> values summed

    @classmethod
    def empty(cls, specs: list[dict[str, Any]]) -> RunningProfile:
        return cls(signature(specs))

    @classmethod
    def of(cls, frame: pd.DataFrame, specs: list[dict[str, Any]]) -> RunningProfile:
        """A full recompute: the statistics of every row of ``frame``."""
        return cls.empty(specs).add(frame, specs)

    def add(self, frame: pd.DataFrame, specs: list[dict[str, Any]]) -> RunningProfile:
        """These statistics plus the rows of ``frame`` (appended after the current rows)."""
        if signature(specs) != self.signature:
            raise ValueError("running profile computed for other contract bounds")
        labels = dict(self.label_counts)
        for label, n in frame["label"].value_counts().items():
            labels[str(int(label))] = labels.get(str(int(label)), 0) + int(n)
        present, unexpected, examples = dict(self.present), dict(self.unexpected), {}
        for spec in row_rules(specs):
            key, values = rule_key(spec), frame[spec["column"]]
            has, bad = _breaks(spec, values)
            present[key] = present.get(key, 0) + int(has.sum())
            unexpected[key] = unexpected.get(key, 0) + int(bad.sum())
            old = self.examples.get(key, [])
            examples[key] = old + [_plain(v) for v in values[bad][: EXAMPLES - len(old)]]
        sums, counts = dict(self.sums), dict(self.counts)
        for column in mean_columns(specs):
            values = frame[column].dropna().to_numpy(np.float64)
            sums[column] = self.sums.get(column, 0.0) + float(values.sum())
            counts[column] = self.counts.get(column, 0) + len(values)
        return replace(
            self,
            n_rows=self.n_rows + len(frame),
            label_counts=dict(sorted(labels.items(), key=lambda kv: int(kv[0]))),
            present=present,
            unexpected=unexpected,
            examples={k: v for k, v in examples.items() if v},
            sums=sums,
            counts=counts,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunningProfile:
        return cls(**data)


def _plain(value: Any) -> Any:
    """A JSON-safe scalar (numpy numbers as Python ones)."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class NewRowKeys:
    """What the merged check needs about the batch's rows beyond their profile: how many
    rows (old and new) share a content hash with a new row, and which new rows are holdout
    images."""

    duplicate_rows: int
    duplicate_examples: list[str]
    holdout_rows: int


def merged_report(
    specs: list[dict[str, Any]], merged: RunningProfile, keys: NewRowKeys
) -> ValidationReport:
    """The contract on the merged set (every rule), judged from its running statistics."""
    outcomes = [_outcome(spec, merged, keys) for spec in specs]
    return ValidationReport(
        success=all(o.success for o in outcomes),
        outcomes=outcomes,
        contract_hash=contract_hash(specs),
        n_rows=merged.n_rows,
    )


def _outcome(spec: dict[str, Any], stats: RunningProfile, keys: NewRowKeys) -> Outcome:
    column, n = spec["column"], stats.n_rows
    if spec["type"] == MEAN_RULE:
        count = stats.counts.get(column, 0)
        mean = stats.sums[column] / count if count else None
        success = mean is not None and spec["min_value"] <= mean <= spec["max_value"]
        result: dict[str, Any] = {"observed_value": mean}
    else:
        if column == CLASS_SHARE:
            bad = {
                label: count / n
                for label, count in stats.label_counts.items()
                if not spec["min_value"] <= count / n <= spec["max_value"]
            }
            present = n
            unexpected = sum(stats.label_counts[label] for label in bad)
            examples: list[Any] = sorted(bad.values())
        elif column == DUPLICATE_KEY:
            present, unexpected = n, keys.duplicate_rows
            examples = keys.duplicate_examples
        elif column == HOLDOUT_LEAK:
            present, unexpected, examples = n, keys.holdout_rows, [1] * keys.holdout_rows
        else:
            key = rule_key(spec)
            present, unexpected = stats.present.get(key, 0), stats.unexpected.get(key, 0)
            examples = stats.examples.get(key, [])
        mostly = spec.get("mostly", 1.0)
        success = present == 0 or (present - unexpected) / present >= mostly
        result = {
            "unexpected_count": unexpected,
            "unexpected_percent": 100 * unexpected / present if present else None,
            "partial_unexpected_list": examples[:EXAMPLES],
        }
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", spec["type"]).lower()  # as GE names it
    return Outcome(name, column, spec["why"], bool(success), observed_phrase(result))
