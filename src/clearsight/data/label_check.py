"""The label check of a feedback batch: do its labels contradict the model's confident answers?

The data contract looks at pixels, balance, duplicates and holdout leakage, never at labels, so
real digits with wrong labels pass it. A feedback batch carries, per image, what the service
answered when it was predicted (``served_label``, ``served_confidence``; written by
``clearsight.inference.feedback`` from the answer ledger): the champion's own answer, with no
model needed here. Among the images the model answered confidently (confidence >=
``data.label_check_confidence``), the share whose given label differs is the disagreement
rate; above ``data.max_label_disagreement`` the batch goes to quarantine with a PNG grid of
those images (given and predicted labels) for a person to look at, and ``clearsight data
accept`` / ``reject`` decide it.

Correcting a confident mistake is what feedback is for, so a few disagreements are expected;
a batch where most confident answers are "wrong" is far more likely a poisoning attempt (or a
labelling slip) than a model that is confidently wrong that often. Batches without served
answers (data sets an operator drops in ``incoming/``) are not label-checked.

A batch accepted by a person gets a review record (``.<batch>.review.json``) beside it in the
incoming folder: the check is then passed as overridden, naming who and when.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clearsight.config import Settings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SERVED_LABEL = "served_label"
SERVED_CONFIDENCE = "served_confidence"
GRID_MAX_IMAGES = 64
FIGURE_SUFFIX = ".labels.png"


@dataclass(frozen=True)
class LabelCheck:
    """Given labels against the model's confident answers, for one batch."""

    passed: bool
    reason: str
    n_images: int
    n_confident: int
    n_disagree: int
    max_rate: float
    min_confidence: float
    rows: list[int] = field(default_factory=list)  # the confident disagreements
    given: list[int] = field(default_factory=list)
    predicted: list[int] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)
    overridden: dict[str, Any] | None = None

    @property
    def rate(self) -> float:
        return self.n_disagree / self.n_confident if self.n_confident else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "n_images": self.n_images,
            "n_confident": self.n_confident,
            "n_disagree": self.n_disagree,
            "disagreement_rate": round(self.rate, 4),
            "max_rate": self.max_rate,
            "min_confidence": self.min_confidence,
            "overridden": self.overridden,
            "disagreements": [
                {"row": r, "given": g, "predicted": p, "confidence": round(c, 4)}
                for r, g, p, c in zip(
                    self.rows, self.given, self.predicted, self.confidence, strict=True
                )
            ],
        }


def compare_labels(
    given: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    max_rate: float,
    min_confidence: float,
) -> LabelCheck:
    """The disagreement rate among confident answers, and whether it is within ``max_rate``."""
    given, predicted = np.asarray(given, np.int64), np.asarray(predicted, np.int64)
    confidence = np.asarray(confidence, np.float64)
    confident = confidence >= min_confidence
    disagree = confident & (given != predicted)
    rows = np.flatnonzero(disagree)
    n_confident, n_disagree = int(confident.sum()), len(rows)
    rate = n_disagree / n_confident if n_confident else 0.0
    passed = rate <= max_rate
    reason = (
        f"labels disagree with {n_disagree} of the model's {n_confident} confident answers "
        f"(>= {min_confidence:.0%}): {rate:.0%} "
        + ("within" if passed else "over")
        + f" the {max_rate:.0%} allowed"
    )
    return LabelCheck(
        passed,
        reason,
        len(given),
        n_confident,
        n_disagree,
        max_rate,
        min_confidence,
        rows.tolist(),
        given[rows].tolist(),
        predicted[rows].tolist(),
        confidence[rows].tolist(),
    )


def served_answers(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """A feedback batch's served labels and confidences; None for any other batch."""
    if not path.is_file() or path.suffix != ".npz":
        return None
    with np.load(path, allow_pickle=False) as data:
        if SERVED_LABEL not in data.files or SERVED_CONFIDENCE not in data.files:
            return None
        return data[SERVED_LABEL], data[SERVED_CONFIDENCE]


def review_record_path(batch: Path) -> Path:
    """Where ``clearsight data accept`` records its decision, beside the batch (dot-named, so
    the incoming watcher skips it)."""
    return batch.with_name(f".{batch.name}.review.json")


def check_batch_labels(settings: Settings, path: Path, given: np.ndarray) -> LabelCheck | None:
    """The label check of the batch at ``path`` (None when it carries no served answers),
    passed as overridden when a person accepted it."""
    answers = served_answers(path)
    if answers is None:
        return None
    result = compare_labels(
        given,
        answers[0],
        answers[1],
        settings.data.max_label_disagreement,
        settings.data.label_check_confidence,
    )
    record = review_record_path(path)
    if not result.passed and record.is_file():
        decision = json.loads(record.read_text())
        who = f"{decision.get('by', '?')} at {decision.get('at', '?')}"
        return replace(
            result, passed=True, reason=f"{result.reason}; accepted by {who}", overridden=decision
        )
    return result


def gate[Check](
    settings: Settings, path: Path, given: np.ndarray, check: Check
) -> tuple[Check, LabelCheck | None]:
    """Ingest's hook: ``check`` failed with the label check's reason when that fails (a
    contract failure keeps its own reason), and the label check (or None) for the report.
    ``check`` is ingest's ``BatchCheck`` (a dataclass with ``passed`` and ``reason``)."""
    labels = check_batch_labels(settings, path, given)
    if labels is not None and not labels.passed and getattr(check, "passed", False):
        check = replace(check, passed=False, reason=labels.reason)  # type: ignore[type-var]
    return check, labels


def disagreement_grid(images: np.ndarray, labels: LabelCheck, title: str) -> Figure:
    """The confidently contradicted images, each titled with its given and predicted label."""
    from matplotlib.figure import Figure

    rows = labels.rows[:GRID_MAX_IMAGES]
    n = max(len(rows), 1)
    cols = min(8, n)
    lines = (n + cols - 1) // cols
    fig = Figure(figsize=(1.4 * cols, 1.6 * lines + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(lines, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, i, row in zip(axes, range(len(rows)), rows, strict=False):
        ax.imshow(images[row], cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(
            f"given {labels.given[i]}\nmodel {labels.predicted[i]} ({labels.confidence[i]:.0%})",
            fontsize=8,
            color="tab:red",
        )
    shown = f" (first {len(rows)})" if len(labels.rows) > len(rows) else ""
    fig.suptitle(f"{title}: {labels.n_disagree} disagreements{shown}", fontsize=10)
    return fig


def write_report(moved: Path, json_report: Path, images: np.ndarray, labels: LabelCheck) -> Path:
    """Beside a quarantined batch: the PNG grid, and the label check in its JSON and Markdown
    reports. Returns the PNG's path."""
    figure = moved.with_name(moved.name + FIGURE_SUFFIX)
    disagreement_grid(images, labels, moved.name).savefig(figure, dpi=100)
    report = json.loads(json_report.read_text())
    report["label_check"] = labels.to_dict() | {"figure": str(figure)}
    json_report.write_text(json.dumps(report, indent=2, default=str) + "\n")
    markdown = json_report.with_name(moved.name + ".report.md")
    if markdown.is_file():
        section = f"\n\n## Labels\n\n{labels.reason}\n\n![disagreements]({figure.name})\n"
        markdown.write_text(markdown.read_text() + section)
    return figure
