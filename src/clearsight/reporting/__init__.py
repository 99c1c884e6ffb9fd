"""What a person reads: figures, the model card, a run's explanation files, the one-image
report and the retrain summary. Files and strings only: logging them is ``tracking``'s job."""
