"""Prefect flows over the clearsight library: retrain, watch-incoming, monitor (thin adapters)."""
