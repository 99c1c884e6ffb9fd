#!/bin/sh
# Import the registry's champion (with its provenance) into the BentoML store, then serve it.
# Restart the container after a promotion to serve the new champion.
set -eu
clearsight build-service
exec clearsight serve --host 0.0.0.0 --port 3000
