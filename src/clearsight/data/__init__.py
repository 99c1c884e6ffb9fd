"""Data: sources, splits with a frozen holdout, digests, the per-image profile, the Great
Expectations contract and the gate in front of training, and incoming batches.

Nothing here knows about MLflow, Prefect or BentoML: it turns a source into arrays, numbers
and reports, and the adapters decide what to do with them. The contract (``contract``,
``gate``) imports Great Expectations on use; the names below are the light ones.
"""

from clearsight.data.dataset import Dataset
from clearsight.data.profile import profile_splits
from clearsight.data.sources import load
from clearsight.data.splits import HoldoutStore, Splits, holdout_panel, make_splits
from clearsight.errors import DataSourceError

__all__ = [
    "DataSourceError",
    "Dataset",
    "HoldoutStore",
    "Splits",
    "holdout_panel",
    "load",
    "make_splits",
    "profile_splits",
]
