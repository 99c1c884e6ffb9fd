"""Ingest: every new batch of the incoming folder becomes a data version, or is quarantined.

The step lives in ``clearsight.data.ingest`` (claim -> check against the current data and the
frozen holdout -> accept or quarantine -> ledger) because it touches nothing but data; it is
named here so that every step a flow runs is found in one place.
"""

from __future__ import annotations

from clearsight.data.ingest import BatchOutcome, IngestResult, ingest_pending

__all__ = ["BatchOutcome", "IngestResult", "ingest_pending"]
