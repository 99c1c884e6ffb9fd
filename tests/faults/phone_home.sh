#!/usr/bin/env bash
# Row 8 of "What survives what": the three entry points a user runs, inside a network
# namespace that has only loopback, traced by tests/faults/test_no_phone_home.py
# (`strace -f -e trace=connect` around this whole script). Each step must succeed offline.
#   make run            the retrain flow (short: CLEARSIGHT_TRAIN__EPOCHS from the caller)
#   clearsight serve    the service, until it answers one prediction
#   make schedule       the Prefect server and both deployments, until one flow run finished
set -euo pipefail
out=${OUT_DIR:?}
stop() { kill -TERM -- "-$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

make run >"$out/run.log" 2>&1
echo "make run: ok"

setsid .venv/bin/clearsight serve --port 3000 >"$out/serve.log" 2>&1 &
serve=$!
for _ in $(seq 300); do
  curl -fs http://127.0.0.1:3000/readyz >/dev/null 2>&1 && break
  kill -0 "$serve" 2>/dev/null || { echo "serve exited"; exit 1; }
  sleep 1
done
.venv/bin/python -c 'import json; print(json.dumps({"images": [{"kind": "array", "scale": "0-255", "data": [[0] * 28] * 28}], "explain": False}))' >"$out/body.json"
curl -fsS -H 'content-type: application/json' --data @"$out/body.json" \
  http://127.0.0.1:3000/predict >"$out/prediction.json"
stop "$serve"
echo "serve: one prediction answered"

setsid make schedule >"$out/schedule.log" 2>&1 &
schedule=$!
for _ in $(seq 240); do
  grep -q "Finished in state" "$out/schedule.log" && break
  kill -0 "$schedule" 2>/dev/null || { echo "schedule exited"; exit 1; }
  sleep 1
done
grep -q "Finished in state" "$out/schedule.log" || { echo "no poll finished"; exit 1; }
stop "$schedule"
echo "schedule: one poll finished"
