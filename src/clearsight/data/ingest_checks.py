"""The checks an incoming batch must pass before it becomes a data version: a list, in order.

Each check reads a ``Candidate`` (the batch, its profile, the version it would extend, that
version's running statistics and index) and returns a ``ValidationReport``; the first one that
fails sends the batch to quarantine with every report so far. A new rule (a label check
against the champion, say) is one more ``IngestCheck`` in ``CHECKS``.

1. **own**: the batch on its own, with the rules each image must meet (Great Expectations,
   ``check_contract(per_image=True)``): a one-image batch cannot be class-balanced.
2. **merged**: the batch merged into the newest version, with every rule, judged from the
   version's running statistics plus the batch's rows (``data.running``): O(batch), however
   much data the version holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from clearsight.config import Settings
from clearsight.data.contract import ValidationReport, check_contract
from clearsight.data.dataset import Dataset
from clearsight.data.profile import profile_dataset
from clearsight.data.running import NewRowKeys, RunningProfile, merged_report
from clearsight.data.version_index import VersionIndex, members
from clearsight.data.versions import DataVersion
from clearsight.task import DIGITS, ImageTask


@dataclass(frozen=True)
class Candidate:
    """What the checks may read about one batch and the version it would extend."""

    settings: Settings
    batch: Dataset  # as read, before normalising to uint8
    frame: pd.DataFrame  # the batch's profile, with its duplicate and holdout keys
    head: DataVersion  # the newest version, which the batch would extend
    before: RunningProfile  # the head's running statistics
    specs: list[dict[str, Any]]  # the contract (``contract.expectation_specs``)
    reference: dict[str, Any] | None  # None: the dataset has no reference profile yet
    index: VersionIndex  # content hashes of the head's base and batches
    held: set[str]  # content hashes of the frozen holdout
    task: ImageTask = DIGITS  # the shape and classes the batch must have


def batch_frame(batch: Dataset, held: set[str]) -> pd.DataFrame:
    """The batch's profile with the columns the contract's duplicate and leakage rules read:
    every row is new, so each is keyed by its content and checked against the holdout."""
    frame = profile_dataset(batch, "batch")
    frame["split_content_hash"] = frame["split"] + ":" + frame["content_hash"]
    frame["holdout_leak"] = frame["content_hash"].isin(held).astype("int64")
    return frame


def own_check(candidate: Candidate) -> ValidationReport:
    c = candidate
    return check_contract(c.frame, c.settings.data, c.reference, task=c.task, per_image=True)


def new_row_keys(candidate: Candidate) -> NewRowKeys:
    """Duplicates that involve a new row (within the batch or with the version's rows: as
    before, duplicates among old rows are not the batch's doing) and holdout images."""
    hashes = candidate.frame["content_hash"]
    old = candidate.index.counts(hashes, members(candidate.head.batch_ids))
    new = hashes.value_counts()
    duplicated = [h for h in dict.fromkeys(hashes) if new[h] > 1 or h in old]
    examples = [f"merged:{h}" for h in duplicated for _ in range(old.get(h, 0))]
    examples += [f"merged:{h}" for h in hashes if h in set(duplicated)]
    return NewRowKeys(
        duplicate_rows=sum(int(new[h]) + old.get(h, 0) for h in duplicated),
        duplicate_examples=examples,
        holdout_rows=int(hashes.isin(candidate.held).sum()),
    )


def merged_check(candidate: Candidate) -> ValidationReport:
    c = candidate
    return merged_report(c.specs, c.before.add(c.frame, c.specs), new_row_keys(c))


@dataclass(frozen=True)
class IngestCheck:
    """One step: ``name`` keys its report, ``title`` heads it, ``where`` ends the reason."""

    name: str
    title: str
    where: str
    run: Callable[[Candidate], ValidationReport]


CHECKS: list[IngestCheck] = [
    IngestCheck("own", "The batch on its own", "on its own", own_check),
    IngestCheck("merged", "Merged", "merged", merged_check),
]


@dataclass(frozen=True)
class BatchCheck:
    """Every check's report on one batch, up to the first failure; ``reason`` says why it
    failed (or that it could not even be read)."""

    passed: bool
    reason: str
    reports: dict[str, ValidationReport] = field(default_factory=dict)
    n_images: int = 0

    @property
    def own(self) -> ValidationReport | None:
        return self.reports.get("own")

    @property
    def merged(self) -> ValidationReport | None:
        return self.reports.get("merged")

    def to_dict(self) -> dict[str, Any]:
        names = list(dict.fromkeys([*(c.name for c in CHECKS), *self.reports]))
        return {
            "passed": self.passed,
            "reason": self.reason,
            "n_images": self.n_images,
            **{n: self.reports[n].to_dict() if n in self.reports else None for n in names},
        }

    def to_markdown(self, title: str) -> str:
        parts = [f"# {title}", "", self.reason, ""]
        titles = {c.name: c.title for c in CHECKS}
        for name, report in self.reports.items():
            body = report.to_markdown().replace("# Data contract", "Data contract", 1)
            parts += [f"## {titles.get(name, name)}", "", body]
        return "\n".join(parts)


def run_checks(candidate: Candidate, checks: list[IngestCheck] | None = None) -> BatchCheck:
    """``checks`` (``CHECKS``) in order, stopping at the first that fails."""
    n = len(candidate.batch)
    if not n:
        return BatchCheck(False, "the batch holds no images")
    reports = {}
    for check in CHECKS if checks is None else checks:
        report = check.run(candidate)
        reports[check.name] = report
        if not report.success:
            return BatchCheck(False, _reason(report, check.where), reports, n)
    return BatchCheck(True, f"{n} images passed: {', '.join(reports)}", reports, n)


def _reason(report: ValidationReport, where: str) -> str:
    failed = report.failures
    named = "; ".join(f"{o.description}: observed {o.observed}" for o in failed[:3])
    more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
    return f"contract failed {where}: {named}{more}"
