#!/bin/sh
# Build a self-contained bento from the registry's champion (model, provenance, code), then
# serve that bento. It starts from the champion of the moment and then follows the alias
# (CLEARSIGHT_SERVING__FOLLOW_ALIAS): later promotions and rollbacks go live without a restart.
set -eu
clearsight build-service
exec clearsight serve --bento clearsight:latest --host 0.0.0.0 --port 3000
