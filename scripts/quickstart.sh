#!/usr/bin/env bash
# Command (1) of the README: sets up everything, fetches the default model, builds the
# `tessera` CLI and runs the main job: a chat completion on the default model.
# Extra arguments go to `tessera generate` (e.g. --prompt "..." --max-tokens 64).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
"${TESSERA_CACHE:-$HOME/.cache/tessera}/venv/bin/python" scripts/fetch_model.py

BUILD="${TESSERA_BUILD_DIR:-build}"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target tessera tessera-worker -j "$(nproc)"
if [ "$#" -eq 0 ]; then
  set -- --prompt "What is the capital of France? Answer in one sentence."
fi
exec "$BUILD/bin/tessera" generate --model default --chat --max-tokens 96 "$@"
