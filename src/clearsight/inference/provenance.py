"""Where a served model comes from, stored with it in the BentoML model store.

Written once when the registry's champion is imported (``clearsight.bento``) and read by the
service at start-up, so ``/metadata`` answers from the bento alone, without an MLflow server.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Provenance:
    """Registry entry, training run and data digests of one model version."""

    name: str
    version: str
    run_id: str | None = None
    registry_alias: str | None = None
    data_digests: dict[str, str] = field(default_factory=dict)
    data_contract_hash: str | None = None
    keras_backend: str | None = None
    trained_with: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    imported_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @classmethod
    def from_run_tags(
        cls, name: str, version: str, run_id: str | None, tags: dict[str, str], **extra: Any
    ) -> Provenance:
        """From the tags a clearsight training run sets (``data_digest.*``, ``version.*``...)."""
        return cls(
            name=name,
            version=version,
            run_id=run_id,
            data_digests={
                k.removeprefix("data_digest."): v
                for k, v in sorted(tags.items())
                if k.startswith("data_digest.")
            },
            data_contract_hash=tags.get("data_contract_hash"),
            keras_backend=tags.get("keras_backend"),
            trained_with={
                k.removeprefix("version."): v
                for k, v in sorted(tags.items())
                if k.startswith("version.")
            },
            git_commit=tags.get("git_commit"),
            **extra,
        )
