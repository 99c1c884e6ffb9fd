"""Everything MLflow: the store, one complete training run, and the registry's state.

The only package that imports ``mlflow``: the rest of the library hands it plain values
(arrays, dataclasses, paths) and gets plain values back (ids, versions, metrics).
"""
