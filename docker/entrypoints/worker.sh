#!/bin/sh
# Prefect worker on the process work pool "clearsight", serving prefect.yaml's deployments.
# Creating the pool and deploying are idempotent, so a restarted container converges.
set -eu
prefect work-pool create clearsight --type process --overwrite
prefect --no-prompt deploy --all
exec prefect worker start --pool clearsight --type process --with-healthcheck
