#!/usr/bin/env bash
# `tessera launch --model random:tiny:q8_0`: the coordinator serves the random model's text
# side (synthetic tokenizer, ChatML template) without writing it, the replica synthesizes
# the weights and registers under the same name, and a request goes through (run by ctest
# with the build's bin dir and the project's Python).
set -euo pipefail
source "$(dirname "$0")/launch_test_lib.sh"

mkdir "$work/tmp"
TMPDIR="$work/tmp" setsid "$bin/tessera" launch --model random:tiny:q8_0 --replicas 1 --port 0 --http-port 0 \
  --port-file "$work/port" --threads 1 --kv-cache-mb 16 > "$work/launch.log" 2>&1 &
launch_pid=$!
for _ in $(seq 1 600); do [ -s "$work/port" ] && break; sleep 0.2; done
[ -s "$work/port" ] || fail "no coordinator port"
port="$(cat "$work/port")"
for _ in $(seq 1 600); do [ "$(ready_replicas)" = "1" ] && break; sleep 0.2; done
client models > "$work/models" 2>&1 || fail "models"
grep -q "^random:tiny:q8_0" "$work/models" || fail "the model is not listed: $(cat "$work/models")"
grep -q "ready replicas 1" "$work/models" || fail "the replica did not register: $(cat "$work/models")"
client generate "hello world" --max-new-tokens 6 --no-stream > "$work/answer" \
  || fail "no answer from the random model"
[ -s "$work/answer" ] || fail "empty answer"
client chat "hi there" --max-new-tokens 4 --no-stream > "$work/chat" || fail "no chat answer"

kill -TERM "$launch_pid"
code=0
wait "$launch_pid" || code=$?
launch_pid=""
[ "$code" = 0 ] || fail "launch exited with $code after SIGTERM"
[ -z "$(ls -A "$work/tmp")" ] || fail "files left behind in TMPDIR: $(ls -A "$work/tmp")"
echo "PASS"
