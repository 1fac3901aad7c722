#!/usr/bin/env bash
# `tessera launch` on one machine (run by ctest with the build's bin dir and the project's
# Python): two replicas of tp 2 (with an f16 KV cache, forwarded to them) register with the
# coordinator it starts, a request goes through, a replica job killed mid-run is reported
# while the other keeps serving, and SIGTERM stops everything (no process left) with exit
# status 0.
set -euo pipefail
source "$(dirname "$0")/launch_test_lib.sh"

setsid "$bin/tessera" launch --model default --tp 2 --replicas 2 --port 0 --http-port 0 --port-file "$work/port" \
  --threads 1 --kv-cache-mb 64 --kv-cache-dtype f16 > "$work/launch.log" 2>&1 &
launch_pid=$!
for _ in $(seq 1 600); do [ -s "$work/port" ] && break; sleep 0.2; done
[ -s "$work/port" ] || fail "no coordinator port"
port="$(cat "$work/port")"
for _ in $(seq 1 600); do [ "$(ready_replicas)" = "2" ] && break; sleep 0.2; done
[ "$(ready_replicas)" = "2" ] || fail "two replicas did not register"
client generate "The capital of France is" --max-new-tokens 8 --no-stream > "$work/answer1" \
  || fail "no answer through launch"
grep -q Paris "$work/answer1" || fail "unexpected answer: $(cat "$work/answer1")"
# The replicas got the launcher's engine settings (their startup reports name the cache).
[ "$(grep -c "f16 elements" "$work/launch.log")" = "2" ] || fail "replicas without --kv-cache-dtype f16"

# Kill one replica's mpirun job: launch reports it, the other replica serves on.
victim="$(pgrep -f "^mpirun .*--coordinator 127.0.0.1:$port" | head -1)"
[ -n "$victim" ] || fail "no mpirun job found"
kill -9 "$victim"
for _ in $(seq 1 150); do grep -q "a replica job exited" "$work/launch.log" && break; sleep 0.2; done
grep -q "a replica job exited" "$work/launch.log" || fail "the lost replica was not reported"
for _ in $(seq 1 150); do [ "$(ready_replicas)" = "1" ] && break; sleep 0.2; done
[ "$(ready_replicas)" = "1" ] || fail "the lost replica is still listed as ready"
client generate "The capital of France is" --max-new-tokens 8 --no-stream > "$work/answer2" \
  || fail "the surviving replica did not answer"
grep -q Paris "$work/answer2" || fail "unexpected answer: $(cat "$work/answer2")"

kill -TERM "$launch_pid"
code=0
wait "$launch_pid" || code=$?
launch_pid=""
[ "$code" = 0 ] || fail "launch exited with $code after SIGTERM"
sleep 0.5
if pgrep -f -- "--coordinator 127.0.0.1:$port" > /dev/null || pgrep -f "tessera-coordinator.*$work" > /dev/null; then
  fail "processes left after launch stopped"
fi

# Usage errors exit 2 before anything starts: the device-memory KV sizing needs the cuda
# backend, and excludes a size in MiB.
code=0
"$bin/tessera" launch --model random:tiny --gpu-memory-utilization 0.9 > "$work/usage.log" 2>&1 \
  || code=$?
[ "$code" = 2 ] && grep -q -- "--gpu-memory-utilization needs --backend cuda" "$work/usage.log" \
  || fail "--gpu-memory-utilization without cuda: exit $code, $(cat "$work/usage.log")"
code=0
"$bin/tessera" launch --model random:tiny --backend cuda --gpu-memory-utilization 0.9 \
  --kv-cache-mb 64 > "$work/usage.log" 2>&1 || code=$?
[ "$code" = 2 ] || fail "--gpu-memory-utilization with --kv-cache-mb: exit $code"
echo "PASS"
