"""The model side: the CNN, fitting it on the device at hand, and scoring it on the holdout.

Keras only (any backend); nothing here knows about MLflow, Prefect or BentoML. Modules are
imported by name (``clearsight.model.fitting``...) so that importing the package stays cheap.
"""
