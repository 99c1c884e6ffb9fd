#!/bin/sh
# Build a self-contained bento from the registry's champion (model, provenance, code), then
# serve that bento. Runs at container start, not image build, so the container always serves
# the current champion: restart it after a promotion.
set -eu
clearsight build-service
exec clearsight serve --bento clearsight:latest --host 0.0.0.0 --port 3000
