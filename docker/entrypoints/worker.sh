#!/bin/sh
# Prefect worker on the process work pool "clearsight", serving prefect.yaml's deployments:
# the same launcher as `make schedule` (flows/schedule.py), against the compose stack's server
# (PREFECT_API_URL): checks prefect.yaml, creates the pool and the registry limit if missing,
# `prefect deploy --all`, then the worker. Idempotent, so a restarted container converges.
set -eu
exec python -m flows.schedule --with-healthcheck
