"""What one retraining produced, as a typed summary the flow returns and publishes.

The Prefect flow (``flows/retrain.py``) only sequences library calls; the words and tables a
person reads about a run are composed here, so the CLI and the flow say the same thing.
No MLflow import: the parts arrive as plain values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from clearsight.choices import INTEGRATED_GRADIENTS
from clearsight.mlflow_links import mlflow_ui_link, ui_base
from clearsight.quality_metrics import COMPLETENESS_GAP_MEDIAN, metric_name

if TYPE_CHECKING:
    from clearsight.data.contract import ValidationReport
    from clearsight.promotion import Decision


class TrackedRun(Protocol):
    """What the summary needs of a training run (``pipelines.TrainingRun`` has it): stated
    here so that reporting depends on no layer above it."""

    @property
    def run_id(self) -> str: ...
    @property
    def tracking_uri(self) -> str: ...
    @property
    def experiment_id(self) -> str: ...


HEADLINE_METRICS = (
    "holdout_accuracy",
    "holdout_macro_f1",
    "holdout_log_loss",
    "holdout_min_class_recall",
    "latency_p95_ms",
    "model_mb",
    metric_name(INTEGRATED_GRADIENTS, COMPLETENESS_GAP_MEDIAN),
)


@dataclass
class RetrainSummary:
    """Everything a person or a caller needs to know about one retrain."""

    run_id: str
    model: str
    version: str
    promoted: bool
    reason: str
    champion: str | None
    tracking_uri: str
    experiment_id: str
    validation_report: str | None
    data_docs: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    service: str | None = None
    data_version: str | None = None  # the exact training data (``clearsight data versions``)

    @classmethod
    def from_parts(
        cls,
        run: TrackedRun,
        decision: Decision,
        report: ValidationReport,
        champion: str | None,
        data_version: str | None = None,
    ) -> RetrainSummary:
        return cls(
            run_id=run.run_id,
            model=decision.model,
            version=decision.challenger_version,
            promoted=decision.promoted,
            reason=decision.reason,
            champion=champion,
            tracking_uri=run.tracking_uri,
            experiment_id=run.experiment_id,
            validation_report=str(report.json_path) if report.json_path else None,
            data_docs=str(report.docs_path) if report.docs_path else None,
            metrics=decision.challenger_metrics,
            champion_metrics=decision.champion_metrics,
            data_version=data_version,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"run_link": self.run_link()}

    def run_link(self) -> str:
        """A link to the run in the MLflow UI's model-training view; for a local store, the
        address ``clearsight ui`` serves it at."""
        link = mlflow_ui_link(ui_base(self.tracking_uri), self.experiment_id, self.run_id)
        if self.tracking_uri.startswith(("http://", "https://")):
            return link
        return f"{link} (after `clearsight ui`)"

    def to_markdown(self) -> str:
        verdict = "promoted to **champion**" if self.promoted else "**not promoted**"
        rows = []
        for key in HEADLINE_METRICS:
            if key in self.metrics:
                champ = self.champion_metrics.get(key)
                rows.append(
                    f"| {key} | {self.metrics[key]:.4g} | "
                    f"{'' if champ is None else f'{champ:.4g}'} |"
                )
        return (
            "\n".join(
                [
                    f"# Retrain: {self.model} v{self.version} {verdict}",
                    "",
                    self.reason,
                    "",
                    "| metric | challenger | champion before |",
                    "|---|---|---|",
                    *rows,
                    "",
                    f"- champion now: v{self.champion}",
                    f"- trained on data version: {self.data_version or 'unversioned'}",
                    f"- MLflow run: {self.run_link()}",
                    f"- data validation: {self.validation_report}",
                    f"- data docs: {self.data_docs}",
                    *([f"- service: {self.service}"] if self.service else []),
                ]
            )
            + "\n"
        )
