"""One typed ``Settings`` object for the whole library.

Values come, highest priority first, from keyword arguments, ``CLEARSIGHT_*`` environment
variables (nested fields with ``__``, e.g. ``CLEARSIGHT_DATA__SOURCE=idx``), a TOML file
(``clearsight.toml`` in the working directory, or the file named by ``CLEARSIGHT_CONFIG``), and
the defaults below. Every default path lives inside the repository, so a fresh clone works
without any configuration and never writes outside itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from clearsight.choices import ResizePolicy, SourceName


def _default_home() -> Path:
    """The repository root for a source checkout, else the working directory.

    ``uv sync`` installs the package editable, so ``src/clearsight`` sits two levels below the
    root that holds ``pyproject.toml``. An installed wheel (in a container) has no such root and
    uses the working directory instead.
    """
    if env := os.environ.get("CLEARSIGHT_HOME"):
        return Path(env).resolve()
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "src" / "clearsight").is_dir():
        return root
    return Path.cwd().resolve()


class DataSettings(BaseModel):
    """Where images come from and how they are split and checked."""

    source: SourceName = "embedded"
    path: Path | None = Field(
        default=None, description="File or folder for the idx, npz and folder sources."
    )
    folder_resize: ResizePolicy = Field(
        default="fit",
        description=(
            "With digit rules, folder images that are not 28x28: 'fit' scales the longer side "
            "to 20 px and centres the digit on a 28x28 canvas (how MNIST was made), 'stretch' "
            "resizes to 28x28 ignoring aspect, 'reject' keeps the original size so the contract "
            "fails. Without digit rules, images are resized (bilinear) to the dataset's size."
        ),
    )
    image_height: int | None = Field(
        default=None, ge=1, description="Target image height; None: the most common in the data."
    )
    image_width: int | None = Field(
        default=None, ge=1, description="Target image width; None: the most common in the data."
    )
    image_channels: Literal[1, 3] | None = Field(
        default=None,
        description="1 (grey) or 3 (colour); None: the most common mode in the data.",
    )
    digit_rules: bool | None = Field(
        default=None,
        description="MNIST-style steps (the polarity rule, the polarity repair and crop-and-centre "
        "for sent images); None: on for the digit sources (embedded, idx, keras, npz), off otherwise.",
    )
    min_images_per_class: int = Field(
        default=10,
        ge=1,
        description="The folder source refuses a class folder with fewer images: each class "
        "needs images in training, validation and the holdout (at 5 or 6 a class's "
        "validation share rounds to none).",
    )
    seed: int = 42
    holdout_fraction: float = Field(default=0.2, gt=0.0, lt=0.5)
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    class_balance_tolerance: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Each class share may deviate this much (relative) from 1/n_classes.",
    )
    drift_tolerance: float = Field(
        default=0.25,
        gt=0.0,
        description="Relative band around the reference mean intensity and ink fraction.",
    )
    drift_mostly: float = Field(
        default=0.99,
        gt=0.0,
        le=1.0,
        description="Share of images whose features must lie in the reference's 0.1-99.9% range.",
    )
    compact_every: int = Field(
        default=50,
        ge=0,
        description=(
            "Merge this many accepted batch files (and this many packs of a level) into one "
            "pack, so loading a data version opens few files; 0 or 1 never compacts."
        ),
    )
    max_label_disagreement: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="A feedback batch whose labels differ from more than this share of the "
        "served model's confident answers goes to quarantine for a person to review.",
    )
    label_check_confidence: float = Field(
        default=0.9,
        ge=0.0,
        le=1.0,
        description="An answer this confident (or more) counts as the model's confident answer "
        "in the label check.",
    )


class TrainSettings(BaseModel):
    """How the CNN is built and fitted. Defaults reach >= 98 % holdout accuracy on the
    embedded data in well under a minute on 2 CPU cores."""

    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=256, ge=1)
    learning_rate: float = Field(default=5e-3, gt=0.0)
    patience: int = Field(default=8, ge=1, description="Early stopping on validation loss.")
    augment: bool | None = Field(
        default=None,
        description="Light random shifts and rotations. None: on for digit-like data (a "
        "shifted, slightly turned digit is the same digit), off otherwise (which changes keep "
        "a class is the dataset's to say).",
    )
    seed: int = 42
    deterministic: bool = Field(
        default=True, description="Deterministic kernels where the backend offers them (CPU)."
    )
    mixed_precision: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="auto: mixed_bfloat16 only where measured to help (TF on bf16 CPUs).",
    )
    jit_compile: Literal["auto", "on", "off"] = "auto"
    steps_per_execution: int | None = Field(
        default=None, ge=1, description="None picks one per backend and device."
    )
    distribution: Literal["auto", "off", "data_parallel"] = Field(
        default="auto",
        description="data_parallel: every visible device (Keras DataParallel, JAX backend); "
        "auto: data-parallel under JAX when more than one device is visible.",
    )
    conv1_filters: int = Field(default=32, ge=1)
    conv2_filters: int = Field(default=64, ge=1)
    dense_dropout: float = Field(default=0.25, ge=0.0, lt=1.0)
    conv_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class TrackingSettings(BaseModel):
    """Where runs and models go. ``MLFLOW_TRACKING_URI`` beats ``tracking_uri``."""

    tracking_uri: str | None = Field(
        default=None, description="None: SQLite store mlflow/mlflow.db, artifacts in mlflow/."
    )
    experiment: str = "clearsight"
    registered_model: str = "clearsight-cnn"
    log_system_metrics: bool = True
    log_explanations: bool = Field(
        default=True,
        description="Activation maps, attribution panels, SHAP plots and the quality report.",
    )
    model_cache_entries: int = Field(
        default=4,
        ge=0,
        description="Registry versions whose model `clearsight explain` keeps in cache_dir "
        "(the newest used; 0: no cache, always load through MLflow).",
    )


class ExplainSettings(BaseModel):
    """The fixed holdout panel that every run and every promotion explains.

    One panel, one size: a run's ``explain_*`` metrics and the promotion's explanation checks
    are measured on the same digits, so the numbers agree and compare across runs.
    """

    panel_size: int = Field(
        default=20, ge=10, description="Holdout images, cycling through the classes."
    )


class PromotionSettings(BaseModel):
    """The bar a challenger must clear on the frozen holdout to become champion."""

    min_accuracy_gain: float = Field(
        default=0.001, ge=0.0, description="Accuracy gain over the champion; ties never promote."
    )
    min_class_recall: float = Field(default=0.90, ge=0.0, le=1.0)
    max_latency_p95_ms: float = Field(default=50.0, gt=0.0, description="One image, warm.")
    max_model_mb: float = Field(default=5.0, gt=0.0)
    max_completeness_gap: float = Field(
        default=0.05, gt=0.0, description="Median integrated-gradients completeness gap."
    )


class MonitoringSettings(BaseModel):
    """The service's traffic log and the drift monitor (docs/monitoring.md)."""

    log_sample_rate: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Share of answered images written to the traffic log; 0 switches it off.",
    )
    log_max_records: int = Field(
        default=20_000, ge=0, description="Records kept; the oldest are deleted beyond it."
    )
    window: int = Field(
        default=200, ge=20, description="Most recent records the monitor tests for drift."
    )
    alpha: float = Field(
        default=0.01,
        gt=0.0,
        lt=1.0,
        description="Drift when any Benjamini-Hochberg adjusted p-value is below this; also "
        "the false-alarm rate per window when nothing drifted.",
    )
    attributions: bool = Field(
        default=True,
        description="Also test integrated-gradients summaries (the monitor computes them for "
        "logged images that have none).",
    )
    experiment: str = "clearsight-monitoring"
    retrain_cooldown_hours: float = Field(
        default=24.0,
        ge=0.0,
        description="After the monitor starts a retrain on drift, it starts no other for this "
        "long, and afterwards only when the data or the champion changed "
        "(clearsight.retrain_policy).",
    )


class ServingSettings(BaseModel):
    """What an operator tunes on a running service (``CLEARSIGHT_SERVING__*``).

    Only what the library's side of the service means something to; the knobs of BentoML and
    uvicorn themselves (event loop, tracing, access log) extend this in ``serving/``.
    ``CLEARSIGHT_API_KEY`` is accepted as a short name for the predict key.
    """

    api_key: SecretStr | None = Field(
        default=None,
        description="The predict scope's key. When set, predict, explain, metadata and OIP "
        "routes need it ('Authorization: Bearer KEY' or 'X-API-Key: KEY'); unset, they are "
        "open. It never opens /feedback or /admin/*.",
    )
    feedback_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the feedback scope (POST /feedback). Unset: /feedback "
        "refuses every caller (403); feedback is never anonymous.",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the admin scope (/admin/*). Unset: `clearsight serve` "
        "generates one into <home>/.clearsight/admin-token (owner-only), where the CLI and "
        "the flows read it.",
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, gt=0, description="Larger request bodies get 413."
    )
    max_batch_size: int = Field(
        default=64, ge=1, description="Images per adaptive-batching forward pass."
    )
    max_batch_latency_ms: int = Field(
        default=20_000,
        ge=100,
        description="A queued forward pass older than this is refused (503) rather than run.",
    )
    max_in_flight: int = Field(
        default=256,
        ge=1,
        description="Requests admitted at once; the next one gets 503 with Retry-After "
        "(load shedding). 256 is four full forward batches, under a second of work on 2 "
        "cores; 64 starved the admitted requests behind a flood of refusals (measured).",
    )
    mlflow_ui_url: str | None = Field(
        default=None,
        description="Base URL of an MLflow UI (e.g. http://127.0.0.1:5000): /metadata then "
        "links the served model's training run.",
    )
    follow_alias: str | None = Field(
        default=None,
        description="Registry alias to follow (e.g. champion): when it moves, the service "
        "loads, warms up and checks the new version, then swaps to it without a restart. "
        "None: serve the pinned model only (no MLflow needed). `clearsight serve` sets it.",
    )
    poll_seconds: float = Field(
        default=30.0,
        ge=0.0,
        description="How often to check the followed alias; 0: only on POST /admin/reload.",
    )
    default_budget_ms: float | None = Field(
        default=None, gt=0, description="Explanation budget when a request gives none."
    )
    feedback_max_age_s: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="Feedback must name a request the service answered at most this long ago "
        "(the answer ledger keeps answers this long).",
    )
    feedback_max_images: int = Field(
        default=256, ge=1, description="Images per feedback request; more get 413."
    )
    feedback_images_per_minute: float = Field(
        default=60.0,
        gt=0,
        description="Each caller's (client address + token) sustained feedback rate, in images.",
    )
    feedback_burst_images: int = Field(
        default=512,
        ge=1,
        description="Images a caller may send at once before the rate applies (429 after).",
    )
    feedback_max_pending_images: int = Field(
        default=5_000,
        ge=1,
        description="Feedback images waiting in the incoming folder for ingest; past it, "
        "/feedback answers 429 until an ingest takes them.",
    )
    answer_ledger_max_rows: int = Field(
        default=1_000_000,
        ge=1,
        description="Answered images the answer ledger keeps (~100 bytes each) for feedback "
        "to be checked against; the oldest are forgotten beyond it.",
    )
    max_explain_units: int = Field(
        default=4096,
        ge=64,
        description="Explanation cost allowed per request, in units: images x targets x, for "
        "each method run, its evaluations x weight (integrated_gradients steps+1, adaptive 32, "
        "smoothgrad samples, occlusion windows x 0.5, shap nsamples x 6, saliency and grad_cam "
        "1; see clearsight.inference.budget). One unit is about one gradient of one image, "
        "0.3-0.6 ms on 2 cores. The default request (1 image, adaptive IG + Grad-CAM) costs "
        "33 (~30 ms); 4096 admits 64 images with the default methods and is 1.5-3 s of work on 2 "
        "cores, shared fairly with other requests (docs/benchmarks.md). At least 64, so that "
        "'degrade' can always fit 64 images.",
    )
    explain_over_budget: Literal["refuse", "degrade"] = Field(
        default="refuse",
        description="A request over max_explain_units: 'refuse' answers 422 over_budget "
        "naming the limit and the request's cost; 'degrade' halves step parameters (IG steps, "
        "SmoothGrad samples, SHAP nsamples) down to floors, then cuts targets, then replaces "
        "methods by saliency, most expensive first, and says so per image (status degraded).",
    )
    explain_chunk_units: int = Field(
        default=256,
        ge=1,
        description="Explanation work is run in chunks of at most this many units (one method "
        "over a slice of a request's images, one image at least), served round-robin across "
        "requests, so a large request cannot hold small ones for longer than a chunk.",
    )
    explain_workers: int = Field(
        default=1,
        ge=1,
        description="Threads that run explanation chunks at once (TensorFlow already uses "
        "every core for one chunk).",
    )
    retry_first_seconds: float = Field(
        default=5.0,
        gt=0.0,
        description="After the registry could not answer (connection refused, timeout, 5xx), "
        "the followed alias is checked again after this delay, doubled at each further "
        "failure (never sooner than the next poll). Outages are retried, never refused.",
    )
    retry_max_seconds: float = Field(
        default=300.0, gt=0.0, description="The longest delay between those retries."
    )

    def secret(self, name: str) -> str | None:
        """The plain value of one of the secret fields, or None when unset."""
        value = getattr(self, name)
        return value.get_secret_value() if value else None


REFERENCE_PROFILE = "reference_profile.json"

# Each store folder's default: (the setting it lies under, the relative path), in the order
# they resolve. Every default lies inside the repository, so a fresh clone writes nowhere else.
FOLDER_DEFAULTS: dict[str, tuple[str, str]] = {
    "data_dir": ("home", "data"),
    "holdout_dir": ("data_dir", "holdout"),
    "incoming_dir": ("data_dir", "incoming"),
    "versions_dir": ("data_dir", "versions"),
    "quarantine_dir": ("data_dir", "quarantine"),
    "traffic_dir": ("data_dir", "traffic"),
    "reports_dir": ("data_dir", "reports"),
    "contract_dir": ("home", "data/contract"),
    "mlflow_dir": ("home", "mlflow"),
    "cache_dir": ("data_dir", "cache"),
}


class Settings(BaseSettings):
    """All of clearsight's configuration, validated once at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="CLEARSIGHT_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    home: Path = Field(default_factory=_default_home)
    data_dir: Path | None = Field(default=None, description="Datasets, holdout, reports.")
    holdout_dir: Path | None = Field(
        default=None, description="The frozen holdout, once a validated run created it."
    )
    incoming_dir: Path | None = Field(
        default=None, description="New data sets dropped here are retrained on."
    )
    versions_dir: Path | None = Field(
        default=None, description="Data versions: manifests and accepted batches' arrays."
    )
    quarantine_dir: Path | None = Field(
        default=None, description="Rejected incoming batches, each with its report."
    )
    reports_dir: Path | None = Field(
        default=None, description="Validation reports (JSON and Great Expectations Data Docs)."
    )
    traffic_dir: Path | None = Field(
        default=None,
        description="The service's traffic log (sampled answered images) and the monitor's "
        "latest drift scores (drift.json), which the service shows in /metrics.",
    )
    contract_dir: Path | None = Field(
        default=None, description="The committed data contract (reference profile)."
    )
    mlflow_dir: Path | None = Field(default=None, description="Local MLflow store.")
    cache_dir: Path | None = Field(
        default=None,
        description="Copies of registry models for quick CLI loads (safe to delete any time).",
    )
    service_url: str | None = Field(
        default=None,
        description="A running prediction service that follows the registry: told to check "
        "its alias after a promotion or rollback (it also polls by itself).",
    )
    registry_lock: Path | None = Field(
        default=None,
        description="The registry lock file (CLEARSIGHT_REGISTRY_LOCK): a path every operator "
        "shares. None: beside a local SQLite store; no file lock with a tracking server.",
    )
    data: DataSettings = Field(default_factory=DataSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    explain: ExplainSettings = Field(default_factory=ExplainSettings)
    promotion: PromotionSettings = Field(default_factory=PromotionSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)

    @model_validator(mode="before")
    @classmethod
    def _short_api_key(cls, values: Any) -> Any:
        """``CLEARSIGHT_API_KEY``: the short name of ``CLEARSIGHT_SERVING__API_KEY``."""
        short = os.environ.get("CLEARSIGHT_API_KEY")
        if short and isinstance(values, dict):
            serving = values.get("serving")
            serving = dict(serving) if isinstance(serving, dict) else {}
            if serving.get("api_key") is None:
                values = values | {"serving": serving | {"api_key": short}}
        return values

    @model_validator(mode="after")
    def _resolve_paths(self) -> Settings:
        """Anchor each folder not given in its parent's default place (``FOLDER_DEFAULTS``)."""
        for name, (parent, relative) in FOLDER_DEFAULTS.items():
            given = getattr(self, name)
            setattr(self, name, Path(given or getattr(self, parent) / relative).resolve())
        return self

    def override(self, section: str, **values: Any) -> Settings:
        """A copy with the given (non-None) fields of one section replaced and validated.

        Command-line options and flow parameters arrive as optional values; None means
        "keep what the environment or the TOML file said".
        """
        updates = {k: v for k, v in values.items() if v is not None}
        if not updates:
            return self
        current = getattr(self, section)
        replaced = type(current).model_validate(current.model_dump() | updates)
        return self.model_copy(update={section: replaced})

    @property
    def reference_profile_target(self) -> Path:
        """Where ``clearsight data reference`` writes the reference profile."""
        assert self.contract_dir is not None
        return self.contract_dir / REFERENCE_PROFILE

    @property
    def reference_profile_path(self) -> Path:
        """The reference profile that drift checks compare against: the configured one, else
        the copy an installed wheel carries (the same committed file), so a wheel works from
        an empty directory."""
        configured = self.reference_profile_target
        if configured.is_file():
            return configured
        packaged = Path(__file__).parent / "contract" / REFERENCE_PROFILE
        return packaged if packaged.is_file() else configured

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = os.environ.get("CLEARSIGHT_CONFIG", "clearsight.toml")
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file))
