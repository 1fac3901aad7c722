#!/usr/bin/env bash
# `tessera launch --model random:tiny:q8_0`: the coordinator serves the random model's text
# side (synthetic tokenizer, ChatML template) without writing it, the replica synthesizes
# the weights and registers under the same name, and a request goes through (run by ctest
# with the build's bin dir and the project's Python).
set -euo pipefail
bin="$1"
python="$2"
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
launch_pid=""
cleanup() { [ -n "$launch_pid" ] && kill -9 -- "-$launch_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
export PYTHONPATH="$root/clients/python"
fail() { echo "FAIL: $*" >&2; cat "$work/launch.log" >&2 || true; exit 1; }
client() { "$python" -m tessera_client --target "127.0.0.1:$port" --timeout 60 "$@"; }

mkdir "$work/tmp"
TMPDIR="$work/tmp" setsid "$bin/tessera" launch --model random:tiny:q8_0 --replicas 1 --port 0 --http-port 0 \
  --port-file "$work/port" --threads 1 --kv-cache-mb 16 > "$work/launch.log" 2>&1 &
launch_pid=$!
for _ in $(seq 1 600); do [ -s "$work/port" ] && break; sleep 0.2; done
[ -s "$work/port" ] || fail "no coordinator port"
port="$(cat "$work/port")"
for _ in $(seq 1 600); do client models 2>/dev/null | grep -q "ready replicas 1" && break; sleep 0.2; done
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
