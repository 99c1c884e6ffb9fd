#!/usr/bin/env bash
# Fault: Postgres (the store of both MLflow and Prefect) restarts while the service answers
# predictions and a retrain runs through the worker. Requirements, each checked here:
#   - the service answers every prediction throughout (it holds its model in memory; only its
#     alias poller talks to MLflow, and an outage there is logged and retried);
#   - the flow run completes, or fails clearly (a state message) and a rerun completes;
#   - MLflow and Prefect reconnect (their SQLAlchemy pools pre-ping connections on checkout,
#     so connections the restart killed are replaced, not handed out).
# Prints one summary line; exits non-zero when a requirement fails. Needs `make stack-up`.
#
#   FAULTS_EPOCHS=15          epochs of the retrain (about 1 s each here): Postgres restarts mid-fit
#   FAULTS_ALLOWED_FAILURES=0 prediction failures tolerated during the whole run
#   FAULTS_DOWN_S=0           0: `docker compose restart postgres`; N: stop, N s down, start
set -euo pipefail
cd "$(dirname "$0")/.."
compose=(docker compose -f docker/compose.yaml)
set -a; . docker/.env; set +a
url="http://127.0.0.1:${SERVICE_PORT:-3000}"
api="http://127.0.0.1:${PREFECT_PORT:-4200}/api"
auth=()
[ -n "${CLEARSIGHT_API_KEY:-}" ] && auth=(-H "Authorization: Bearer $CLEARSIGHT_API_KEY")
epochs="${FAULTS_EPOCHS:-15}"
allowed="${FAULTS_ALLOWED_FAILURES:-0}"
down_s="${FAULTS_DOWN_S:-0}"

work=$(mktemp -d)
loop_pid=""
cleanup() {
    [ -n "$loop_pid" ] && kill "$loop_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
now() { echo "$EPOCHREALTIME"; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }
json_field() {  # json_field EXPR: evaluate EXPR on the JSON document `d` read from stdin
    python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"
}

# -- Prefect API helpers (the server's published port; the worker runs the flow) -----------
flow_run_state() {  # "TYPE|name|message" of flow run $1
    curl -fsS --max-time 10 "$api/flow_runs/$1" | json_field \
        "'|'.join([d['state_type'], d['state_name'], ((d.get('state') or {}).get('message') or '').replace(chr(10), ' ')])"
}
task_run_states() {  # "name=TYPE ..." of the task runs of flow run $1
    curl -fsS --max-time 10 -X POST -H 'Content-Type: application/json' \
        -d "{\"flow_runs\": {\"id\": {\"any_\": [\"$1\"]}}}" "$api/task_runs/filter" \
        | json_field "' '.join(f\"{t['name']}={t['state_type']}\" for t in d)"
}
start_retrain() {  # prints the new flow run's id
    "${compose[@]}" exec -T worker prefect deployment run retrain/nightly \
        --param epochs="$epochs" --param only_if_new_data=false >"$work/run.txt"
    sed -n 's/.*UUID: *\([0-9a-f-]\{36\}\).*/\1/p' "$work/run.txt" | head -1
}
wait_final() {  # wait_final ID TIMEOUT_S: prints the final "TYPE|name|message"
    local id=$1 limit=$2 start state
    start=$(date +%s)
    while :; do
        # The API may answer 503 or not at all while Postgres restarts: keep asking.
        state=$(flow_run_state "$id" 2>/dev/null) || state="UNKNOWN||"
        case "${state%%|*}" in
            COMPLETED | FAILED | CRASHED | CANCELLED) echo "$state"; return 0 ;;
        esac
        [ $(( $(date +%s) - start )) -lt "$limit" ] || { echo "TIMEOUT|$state"; return 0; }
        sleep 2
    done
}

# -- 1. predictions in the background: one every ~75 ms, 2 s client timeout --------------
python3 -m uv run --no-sync python -c "
import json
from clearsight.data.sources import load_embedded
d = load_embedded()
digit = d.images[d.labels == 7][0].tolist()
print(json.dumps({'images': [{'kind': 'array', 'scale': '0-255', 'data': digit}], 'explain': False}))
" >"$work/body.json"
curl -fsS --max-time 10 "${auth[@]}" -H 'Content-Type: application/json' \
    --data @"$work/body.json" "$url/predict" >/dev/null \
    || { echo "the service does not answer before the fault: is the stack up?" >&2; exit 1; }
predict_loop() {
    # One line per request: start time (s since epoch), HTTP status (000: no answer in 2 s).
    while :; do
        local t code
        t=$EPOCHREALTIME
        code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 2 "${auth[@]}" \
            -H 'Content-Type: application/json' --data @"$work/body.json" "$url/predict" \
            2>/dev/null) || true
        echo "$t ${code:-000}" >>"$work/requests.log"
        sleep 0.075
    done
}
predict_loop &
loop_pid=$!
echo "== predictions every ~75 ms in the background"

# -- 2. a retrain through the worker; wait until it trains ------------------------------
since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
flow_id=$(start_retrain)
[ -n "$flow_id" ] || { cat "$work/run.txt" >&2; echo "no flow run id" >&2; exit 1; }
echo "== flow run $flow_id (retrain/nightly, $epochs epochs): waiting until it trains"
start=$(date +%s)
until task_run_states "$flow_id" 2>/dev/null | grep -q 'train-model[^ ]*=RUNNING'; do
    state=$(flow_run_state "$flow_id")
    case "${state%%|*}" in
        COMPLETED | FAILED | CRASHED | CANCELLED)
            echo "the flow run ended before training started: $state" >&2; exit 1 ;;
    esac
    [ $(( $(date +%s) - start )) -lt 600 ] || { echo "not training after 600 s: $state" >&2; exit 1; }
    sleep 1
done
echo "training after $(( $(date +%s) - start )) s: $(task_run_states "$flow_id")"
# Mid-fit, not while the run is being set up: the second epoch has begun, so every later
# epoch's metrics go to MLflow across the restart (the worker prints Keras' progress).
until "${compose[@]}" logs --no-log-prefix --since "$since" worker 2>/dev/null \
    | grep -q "Epoch 2/${epochs}\$"; do
    [ $(( $(date +%s) - start )) -lt 900 ] || { echo "no second epoch after 900 s" >&2; exit 1; }
    sleep 1
done
echo "epoch 2 of $epochs after $(( $(date +%s) - start )) s"

# -- 3. restart Postgres while it trains and the service answers ------------------------
t_down=$(now)
if [ "$down_s" = 0 ]; then
    echo "== docker compose restart postgres"
    "${compose[@]}" restart postgres
else  # a longer outage: stopped, then started again after $down_s s
    echo "== docker compose stop postgres; ${down_s} s down; start"
    "${compose[@]}" stop postgres
    sleep "$down_s"
    "${compose[@]}" start postgres
fi
until "${compose[@]}" exec -T postgres pg_isready -q -U "$POSTGRES_USER" -d "${POSTGRES_DB:-mlflow}"; do
    sleep 0.2
done
t_up=$(now)
restart_s=$(elapsed "$t_down" "$t_up")
echo "Postgres is back after $restart_s s"

# -- 4. the flow run ends: completed, or failed clearly and a rerun completes ---------------
final=$(wait_final "$flow_id" 1200)
flow_state="${final%%|*}"
echo "flow run $flow_id: $final"
rerun="not needed"
ok=1
case "$flow_state" in
    COMPLETED) ;;
    FAILED | CRASHED)
        message="${final#*|*|}"
        if [ -z "$message" ]; then
            echo "the flow run failed without a state message" >&2
            ok=0
        fi
        echo "== rerun of retrain/nightly"
        rerun_id=$(start_retrain)
        [ -n "$rerun_id" ] || { cat "$work/run.txt" >&2; echo "no flow run id" >&2; exit 1; }
        rerun_final=$(wait_final "$rerun_id" 1200)
        rerun="${rerun_final%%|*}"
        echo "rerun $rerun_id: $rerun_final"
        [ "$rerun" = COMPLETED ] || ok=0
        ;;
    *) echo "the flow run did not end in a clear state: $final" >&2; ok=0 ;;
esac

# -- 5. MLflow and Prefect reconnected; the service's registry checks work again ---------
echo "== reconnection checks"
champion=$("${compose[@]}" exec -T worker clearsight models --json | json_field "d['champion']") \
    || { echo "MLflow does not answer from the worker" >&2; ok=0; }
echo "MLflow: champion v$champion"
"${compose[@]}" exec -T worker prefect flow-run ls --limit 1 >/dev/null \
    || { echo "the Prefect API does not answer from the worker" >&2; ok=0; }
curl -fsS --max-time 10 "$api/health" >/dev/null && echo "Prefect: API healthy" \
    || { echo "the Prefect API is not healthy" >&2; ok=0; }
# The admin scope (its token from docker/.env, passed on a file descriptor, never argv).
check=$(curl -fsS --max-time 120 -X POST -H @<(printf 'Authorization: Bearer %s\n' "$CLEARSIGHT_ADMIN_TOKEN") "$url/admin/reload?wait=true" \
    | json_field "d['outcome'] + ' (' + d['detail'] + ')'") || check="no answer"
echo "service: registry check $check"
case "$check" in
    unchanged* | swapped*) ;;
    *) echo "the service cannot read the registry after the restart" >&2; ok=0 ;;
esac

# -- 6. the predictions: all answered, in the restart window and outside it --------------
sleep 2  # a few more requests after everything is back
kill "$loop_pid"
wait "$loop_pid" 2>/dev/null || true
loop_pid=""
# The window: from the restart command until Postgres is back, plus 15 s in which the
# servers reconnect and the service's alias poller (every 10 s) meets the new database.
read -r total total_fail window window_ok window_fail < <(python3 - "$work/requests.log" \
    "$t_down" "$t_up" <<'EOF'
import sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
down, up = float(sys.argv[2]), float(sys.argv[3]) + 15
inside = [code for t, code in rows if down <= float(t) <= up]
print(len(rows), sum(code != "200" for _, code in rows), len(inside),
      sum(code == "200" for code in inside), sum(code != "200" for code in inside))
EOF
)
if [ "$total_fail" -gt 0 ]; then
    echo "failed predictions (start time, status):"
    grep -v ' 200$' "$work/requests.log" | head -20
fi
[ "$total_fail" -le "$allowed" ] || ok=0
window_s=$(elapsed "$t_down" "$t_up")
echo "$window requests during the restart window (${window_s} s until Postgres was back, + 15 s): $window_ok answered," \
    "$window_fail failed; flow run $flow_state; rerun $rerun" \
    "($total requests in all, $total_fail failed)"
[ "$ok" = 1 ] || { echo "stack faults: FAILED" >&2; exit 1; }
echo "stack faults passed"
