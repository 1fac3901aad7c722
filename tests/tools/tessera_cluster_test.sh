#!/usr/bin/env bash
# The multi-process mode under real `mpirun --oversubscribe` (run by ctest with the build's
# bin dir and the project's Python):
#  1. tessera-coordinator serves the default model with no replica: health NOT_SERVING and
#     requests UNAVAILABLE;
#  2. `mpirun -np 2 tessera-worker --tp 2 --deterministic --coordinator HOST:PORT` registers
#     before it loads (the ranks load the coordinator's plan) and turns ready once serving;
#     a request through the coordinator (Python client CLI) gives exactly the text
#     `tessera generate --deterministic` gives on one rank;
#  3. SIGTERM to the coordinator ends the worker job (a replica is fail-stop), with a
#     message naming the coordinator.
set -euo pipefail
bin="$1"
python="$2"
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PYTHONPATH="$root/clients/python"
fail() { echo "FAIL: $*" >&2; for f in "$work"/*.log; do echo "== $f" >&2; cat "$f" >&2; done; exit 1; }
client() { "$python" -m tessera_client --target "127.0.0.1:$port" --timeout 60 "$@"; }
wait_for() {  # wait_for SECONDS COMMAND...: until COMMAND succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" > /dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

"$bin/tessera-coordinator" --model default --host 127.0.0.1 --port 0 --http-port 0 \
  --port-file "$work/port" --heartbeat-timeout 5 > "$work/coordinator.log" 2>&1 &
pids+=($!)
coordinator=$!
wait_for 60 test -s "$work/port" || fail "the coordinator did not start"
port="$(cat "$work/port")"

# 1. No replica yet.
if client generate "Hello" --no-stream 2> "$work/refused.err"; then fail "served without a replica"; fi
grep -q "UNAVAILABLE" "$work/refused.err" || fail "no UNAVAILABLE: $(cat "$work/refused.err")"

# 2. A tp 2 replica registers and serves.
mpirun -np 2 "$bin/tessera-worker" --model default --deterministic --threads 1 --kv-cache-mb 64 \
  --coordinator "127.0.0.1:$port" > "$work/worker.log" 2>&1 &
pids+=($!)
worker=$!
wait_for 120 grep -q "registered with" "$work/worker.log" || fail "the worker did not register"
# Registered before loading (the coordinator's plan decides the slices); ready once serving.
ready() { client models | grep -q "ready replicas 1"; }
wait_for 120 ready || fail "the replica did not become ready"
registered_at="$(grep -n "registered with" "$work/worker.log" | head -1 | cut -d: -f1)"
loaded_at="$(grep -n "^KV cache:" "$work/worker.log" | head -1 | cut -d: -f1)"
((registered_at < loaded_at)) || fail "the replica loaded before the coordinator planned it"
prompt="The capital of France is"
client generate "$prompt" --max-new-tokens 12 --no-stream > "$work/remote.txt" \
  || fail "request through the coordinator"
"$bin/tessera" generate --model default --deterministic --threads 1 --prompt "$prompt" \
  --max-new-tokens 12 --no-stream > "$work/local.txt" 2> "$work/local.log" \
  || fail "tessera generate"
diff "$work/local.txt" "$work/remote.txt" > "$work/diff.log" || fail "texts differ"

# 3. The coordinator goes: the worker job ends too.
kill -TERM "$coordinator"
for _ in $(seq 1 150); do kill -0 "$worker" 2> /dev/null || break; sleep 0.2; done
if kill -0 "$worker" 2> /dev/null; then fail "the worker outlived the coordinator"; fi
grep -q "coordinator ended the stream" "$work/worker.log" || fail "no message about the coordinator"
echo "PASS"
