#!/bin/sh
# One-shot first retrain, so the registry has a champion before the service starts.
# Exits 0 when a champion exists (trained now or earlier); the service waits for it.
set -eu
if clearsight models | grep -q "^champion: [0-9]"; then
    echo "registry already has a champion: nothing to bootstrap"
    exit 0
fi
exec python flows/retrain.py --epochs "${BOOTSTRAP_EPOCHS:-3}"
