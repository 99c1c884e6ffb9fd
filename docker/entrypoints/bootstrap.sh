#!/bin/sh
# One-shot first retrain, so the registry has a champion before the service starts.
# Exits 0 when a champion exists (trained now or earlier), 1 otherwise (the service then
# never starts, and `docker compose logs bootstrap` says which promotion check failed).
set -eu
has_champion() {
    clearsight models --json 2>/dev/null \
        | python -c "import json, sys; t = sys.stdin.read(); sys.exit(0 if t and json.loads(t)['champion'] else 1)"
}
if has_champion; then
    echo "registry already has a champion: nothing to bootstrap"
    exit 0
fi
clearsight retrain --epochs "${BOOTSTRAP_EPOCHS:-12}"
has_champion || { echo "bootstrap: the first model was not promoted (see above)" >&2; exit 1; }
