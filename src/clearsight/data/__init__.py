"""Image sources, splits with a frozen holdout, digests and the per-image profile.

Nothing here knows about MLflow, Prefect or BentoML: it turns a source into arrays and
numbers, and the adapters decide what to do with them.
"""

from clearsight.data.dataset import N_CLASSES, Dataset, DataSourceError
from clearsight.data.profile import profile_splits
from clearsight.data.sources import load
from clearsight.data.splits import HoldoutStore, Splits, make_splits

__all__ = [
    "N_CLASSES",
    "DataSourceError",
    "Dataset",
    "HoldoutStore",
    "Splits",
    "load",
    "make_splits",
    "profile_splits",
]
