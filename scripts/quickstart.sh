#!/usr/bin/env bash
# Command (1) of the README: sets up everything, fetches the default model, builds the
# binaries and runs the main job: `tessera serve` on the default model (gRPC on
# $TESSERA_PORT, default 50051), a demo chat request streamed through it with the Python
# client, and then the server keeps running until Ctrl-C (SIGINT drains it).
#   bash scripts/quickstart.sh [--prompt TEXT] [--demo-only]
# --demo-only stops the server after the demo request.
set -euo pipefail
cd "$(dirname "$0")/.."

prompt="What is the capital of France? Answer in one sentence."
demo_only=0
while (($#)); do
  case "$1" in
    --prompt) prompt="${2:?--prompt needs a text}"; shift 2 ;;
    --demo-only) demo_only=1; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "quickstart: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

bash scripts/setup.sh
CACHE="${TESSERA_CACHE:-$HOME/.cache/tessera}"
"$CACHE/venv/bin/python" scripts/fetch_model.py

BUILD="${TESSERA_BUILD_DIR:-build}"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target tessera tessera-worker tessera-coordinator -j "$(nproc)"

port="${TESSERA_PORT:-50051}"
http_port="${TESSERA_HTTP_PORT:-8000}"
port_file="$(mktemp)"
http_port_file="$(mktemp)"
rm -f "$port_file" "$http_port_file"
"$BUILD/bin/tessera" serve --model default --port "$port" --port-file "$port_file" \
  --http-port "$http_port" --http-port-file "$http_port_file" &
server=$!
trap 'kill -INT "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  [ -s "$port_file" ] && break
  kill -0 "$server" 2>/dev/null || { echo "quickstart: tessera serve failed to start" >&2; exit 1; }
  sleep 0.1
done
[ -s "$port_file" ] || { echo "quickstart: tessera serve did not start in 60 s" >&2; exit 1; }
port="$(cat "$port_file")"  # the bound one, also when TESSERA_PORT=0 asks for any
http_port="$(cat "$http_port_file")"

echo "--- demo: tessera-client chat \"$prompt\""
PYTHONPATH=clients/python "$CACHE/venv/bin/python" -m tessera_client --target "localhost:$port" \
  chat "$prompt" --max-new-tokens 96
if ((demo_only)); then exit 0; fi
cat <<MSG
--- tessera serve is running on localhost:$port (Ctrl-C stops it). Try:
  PYTHONPATH=clients/python $CACHE/venv/bin/python -m tessera_client --target localhost:$port \\
    generate "Once upon a time" --max-new-tokens 32
  curl -s localhost:$http_port/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model": "default", "messages": [{"role": "user", "content": "Hi!"}]}'
  curl -s localhost:$http_port/metrics
MSG
trap - EXIT
wait "$server"
