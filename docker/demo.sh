#!/usr/bin/env bash
# The stack proves itself: one retrain inside it (through the Prefect worker), then a prediction
# with an explanation from the containerised service, over HTTP from this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
compose=(docker compose -f docker/compose.yaml)
set -a; . docker/.env; set +a
port=${SERVICE_PORT:-3000}

echo "== retrain inside the stack (deployment retrain/nightly, run by the worker)"
"${compose[@]}" exec -T worker prefect deployment run retrain/nightly \
    --param epochs="${DEMO_EPOCHS:-2}" --watch --watch-timeout 1200
"${compose[@]}" exec -T worker clearsight models

echo "== reload the service with the registry's champion"
"${compose[@]}" restart service
"${compose[@]}" up --wait --wait-timeout 300 service

echo "== a prediction with its explanation from the containerised service"
digit=$(mktemp --suffix=.png)
out=$(mktemp -d)
trap 'rm -rf "$digit" "$out"' EXIT
python3 -m uv run --no-sync python -c "
from PIL import Image
from clearsight.data.sources import load_embedded
d = load_embedded()
Image.fromarray(d.images[d.labels == 7][0]).save('$digit')"
python3 -m uv run --no-sync clearsight predict "$digit" --url "http://127.0.0.1:$port" \
    --explain --out "$out"
ls "$out"/*.png >/dev/null
echo "stack demo passed"
