#!/usr/bin/env bash
# Container entrypoint of the coordinator: tessera-coordinator configured from the
# environment (the Helm chart sets it). Arguments are passed on to tessera-coordinator.
#   TESSERA_MODELS           space-separated [NAME=]PATH models to serve (default: default)
#   TESSERA_GRPC_PORT        gRPC port (50051)        TESSERA_HTTP_PORT  HTTP port (8000)
#   TESSERA_AUTH_TOKEN_FILE  bearer token file        TESSERA_TLS_CERT / TESSERA_TLS_KEY
#   TESSERA_DRAIN_TIMEOUT    seconds SIGTERM waits for calls in flight
#   TESSERA_BIN_DIR          where the binaries are (/opt/tessera/bin)
set -euo pipefail
bin="${TESSERA_BIN_DIR:-/opt/tessera/bin}"
args=(--host "${TESSERA_HOST:-0.0.0.0}" --port "${TESSERA_GRPC_PORT:-50051}"
      --http-port "${TESSERA_HTTP_PORT:-8000}")
for m in ${TESSERA_MODELS:-default}; do args+=(--model "$m"); done
[ -z "${TESSERA_AUTH_TOKEN_FILE:-}" ] || args+=(--auth-token-file "$TESSERA_AUTH_TOKEN_FILE")
if [ -n "${TESSERA_TLS_CERT:-}" ]; then
  : "${TESSERA_TLS_KEY:?TESSERA_TLS_CERT is set but TESSERA_TLS_KEY is not}"
  args+=(--tls-cert "$TESSERA_TLS_CERT" --tls-key "$TESSERA_TLS_KEY")
fi
[ -z "${TESSERA_DRAIN_TIMEOUT:-}" ] || args+=(--drain-timeout "$TESSERA_DRAIN_TIMEOUT")
exec "$bin/tessera-coordinator" "${args[@]}" "$@"
