#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) in build-fuzz/ and runs each for a
# bounded time. Exits non-zero if any fuzzer finds a crash, leak, timeout or sanitizer
# report; the reproducer is left in build-fuzz/artifacts/<fuzzer>/.
#
#   scripts/run_fuzzers.sh                 # 30 s per fuzzer
#   FUZZ_SECONDS=300 scripts/run_fuzzers.sh
#   BUILD_DIR=/tmp/fz scripts/run_fuzzers.sh gguf_fuzzer   # one fuzzer
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-fuzz}"
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
JOBS="${JOBS:-2}"
FUZZERS=("$@")
if [[ ${#FUZZERS[@]} -eq 0 ]]; then
  FUZZERS=(gguf_fuzzer safetensors_fuzzer)
fi

command -v clang++ >/dev/null || { echo "run_fuzzers: clang++ not found" >&2; exit 1; }

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
CC=clang CXX=clang++ cmake -S "$ROOT/tests/fuzz" -B "$BUILD_DIR" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS" --target "${FUZZERS[@]}" make_fuzz_seeds

# Fresh seeds every run; the working corpus keeps what earlier runs found.
rm -rf "$BUILD_DIR/seeds"
"$BUILD_DIR/make_fuzz_seeds" "$BUILD_DIR/seeds"

status=0
for fuzzer in "${FUZZERS[@]}"; do
  kind="${fuzzer%_fuzzer}"
  corpus="$BUILD_DIR/corpus/$kind"
  artifacts="$BUILD_DIR/artifacts/$fuzzer"
  mkdir -p "$corpus" "$artifacts"
  echo "== $fuzzer for ${FUZZ_SECONDS}s (corpus $corpus)"
  if ! UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
       "$BUILD_DIR/$fuzzer" "$corpus" "$BUILD_DIR/seeds/$kind" \
         -max_total_time="$FUZZ_SECONDS" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
         -artifact_prefix="$artifacts/" -print_final_stats=1 \
         > "$BUILD_DIR/$fuzzer.log" 2>&1; then
    echo "!! $fuzzer FAILED; see $BUILD_DIR/$fuzzer.log and $artifacts/" >&2
    tail -n 40 "$BUILD_DIR/$fuzzer.log" >&2
    status=1
  else
    grep -E "^(stat::number_of_executed_units|stat::new_units_added)" "$BUILD_DIR/$fuzzer.log" || true
    echo "ok $fuzzer"
  fi
done
exit $status
