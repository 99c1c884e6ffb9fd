#!/usr/bin/env bash
# The stack proves itself: one retrain inside it (through the Prefect worker); when it promotes,
# the running service swaps to the new champion by itself (no restart) and says so; then a
# prediction with an explanation from the containerised service, over HTTP from this machine.
#
#   DEMO_EPOCHS=15            epochs of the demo retrain
#   DEMO_EXPECT_PROMOTION=1   fail unless the retrain promotes (CI bootstraps a weak champion)
set -euo pipefail
cd "$(dirname "$0")/.."
compose=(docker compose -f docker/compose.yaml)
set -a; . docker/.env; set +a
url="http://127.0.0.1:${SERVICE_PORT:-3000}"
auth=()
[ -n "${CLEARSIGHT_API_KEY:-}" ] && auth=(-H "Authorization: Bearer $CLEARSIGHT_API_KEY")
live_version() {
    curl -fsS "${auth[@]}" "$url/metadata" | python3 -c "import json, sys; print(json.load(sys.stdin)['version'])"
}
champion() {
    "${compose[@]}" exec -T worker clearsight models --json \
        | python3 -c "import json, sys; print(json.load(sys.stdin)['champion'])"
}

before=$(live_version)
echo "== the service answers with v$before (champion v$(champion))"

echo "== retrain inside the stack (deployment retrain/nightly, run by the worker)"
"${compose[@]}" exec -T worker prefect deployment run retrain/nightly \
    --param epochs="${DEMO_EPOCHS:-15}" --param only_if_new_data=false \
    --watch --watch-timeout 1200
"${compose[@]}" exec -T worker clearsight models
after=$(champion)

if [ "$after" = "$before" ]; then
    echo "== the retrain did not beat the champion: the service keeps v$before"
    [ "${DEMO_EXPECT_PROMOTION:-0}" = 1 ] && { echo "expected a promotion" >&2; exit 1; }
else
    echo "== v$after was promoted: waiting for the service to swap (no restart)"
    start=$(date +%s)
    until [ "$(live_version)" = "$after" ]; do
        [ $(( $(date +%s) - start )) -lt 300 ] || { echo "v$after not live after 300 s" >&2; exit 1; }
        sleep 1
    done
    echo "v$after is live $(( $(date +%s) - start )) s after the flow finished"
    curl -fsS "${auth[@]}" "$url/metadata" | python3 -c \
        "import json, sys; print('live:', json.load(sys.stdin)['live'])"
fi

echo "== a prediction with its explanation from the containerised service"
digit=$(mktemp --suffix=.png)
out=$(mktemp -d)
trap 'rm -rf "$digit" "$out"' EXIT
python3 -m uv run --no-sync python -c "
from PIL import Image
from clearsight.data.sources import load_embedded
d = load_embedded()
Image.fromarray(d.images[d.labels == 7][0]).save('$digit')"
python3 -m uv run --no-sync clearsight predict "$digit" --url "$url" --explain --out "$out" \
    | tee "$out/answer.txt"
grep -q "v$(live_version) " "$out/answer.txt"
ls "$out"/*.png >/dev/null
echo "stack demo passed"
