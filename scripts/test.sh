#!/usr/bin/env bash
# Command (2) of the README: sets up everything on a fresh machine, fetches the default model,
# builds everything the tests need and runs every test (ctest; the bounded fuzz runs are one
# of the ctest tests).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
"${TESSERA_CACHE:-$HOME/.cache/tessera}/venv/bin/python" scripts/fetch_model.py

BUILD="${TESSERA_BUILD_DIR:-build}"
JOBS="${TESSERA_JOBS:-$(nproc)}"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTESSERA_BUILD_TESTS=ON \
  -DTESSERA_BUILD_BENCH=ON -DTESSERA_PYTHON="${TESSERA_CACHE:-$HOME/.cache/tessera}/venv/bin/python"
cmake --build "$BUILD" -j "$JOBS"
ctest --test-dir "$BUILD" --output-on-failure -j "$JOBS" --timeout 900
