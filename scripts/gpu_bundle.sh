#!/usr/bin/env bash
# Packs a build's GPU tests (ctest label `gpu`) for a bare GPU machine: the test binaries,
# the shared libraries such a machine lacks (abseil, GoogleTest, gRPC; its own CUDA runtime,
# NCCL, C and C++ libraries are used), when the build has them the benchmark binaries
# (tessera, tessera_bench_generate, tessera_bench_serve) with bench/gpu_compare.sh, and a
# run.sh that runs, by phase:
#   tests     every GPU test binary (the default, with bench);
#   bench     only if the tests passed: bench/gpu_compare.sh, Tessera's cuda backend against
#             transformers on a random-weight Llama-3-8B (TESSERA_EXPERIMENTAL_CUDA=1);
#   memcheck  the CUDA kernel tests under compute-sanitizer's memcheck.
# About 35 MB with the benchmarks, so it travels with the working tree to the `device`
# tool's machine:
#
#   bash scripts/test.sh                       # or any build of the tests with nvcc present
#   bash scripts/gpu_bundle.sh [BUILD_DIR] [OUT_DIR]     # defaults: build, build-gpu
#   # then, through the device tool: run "bash build-gpu/run.sh [PHASE ...]" carrying build-gpu
#   # (one run call is limited to 10 minutes: "tests" and "bench" as two calls are safer)
#
# Exit status 2 when the build has no GPU tests (configured without CUDA).
set -euo pipefail
build="${1:-build}"
out="${2:-build-gpu}"
[[ -f "$build/CTestTestfile.cmake" ]] || { echo "gpu_bundle: $build is not a test build" >&2; exit 2; }
mapfile -t binaries < <(ctest --test-dir "$build" -L gpu --show-only=json-v1 | python3 -c '
import json, sys
tests = json.load(sys.stdin)["tests"]
print("\n".join(sorted({t["command"][0] for t in tests if t.get("command")})))')
[[ ${#binaries[@]} -gt 0 && -n "${binaries[0]}" ]] \
  || { echo "gpu_bundle: no test labelled gpu in $build (configured without CUDA?)" >&2; exit 2; }
cmake --build "$build" --target $(for b in "${binaries[@]}"; do basename "$b"; done)
# The benchmarks, when this build has their targets (TESSERA_BUILD_BENCH).
benches=()
if cmake --build "$build" --target tessera tessera_bench_generate tessera_bench_serve >/dev/null 2>&1
then
  benches=("$build/bin/tessera" "$build/bin/tessera_bench_generate" "$build/bin/tessera_bench_serve")
fi

rm -rf "$out"
mkdir -p "$out/lib"
for b in "${binaries[@]}" "${benches[@]}"; do
  cp "$b" "$out/"
  # Libraries outside the C/C++ runtime and the CUDA toolkit.
  ldd "$b" | awk '/=>/ {print $3}' \
    | grep -Ev '/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so|/cuda/|libcuda|libnccl' \
    | xargs -r -I{} cp -Ln {} "$out/lib/"
done
if [[ ${#benches[@]} -gt 0 ]]; then
  mkdir -p "$out/bench"
  cp "$(dirname "$0")/../bench/gpu_compare.sh" "$(dirname "$0")/../bench/hf_transformers_bench.py" \
    "$out/bench/"
fi

{
  echo '#!/usr/bin/env bash'
  echo '# Written by scripts/gpu_bundle.sh: runs the bundled GPU tests on this machine.'
  echo 'cd "$(dirname "$0")"'
  echo 'nccl="$(find / -name libnccl.so.2 -not -path "/proc/*" 2>/dev/null | head -1)"'
  echo 'export LD_LIBRARY_PATH="$PWD/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib${nccl:+:$(dirname "$nccl")}"'
  echo 'nvidia-smi -L || true'
  if [[ ${#benches[@]} -gt 0 ]]; then echo './tessera devices --smoke || true'; fi
  echo 'phases=" ${*:-tests bench} "'
  echo 'status=0'
  echo 'if [[ "$phases" == *" tests "* || "$phases" == *" bench "* ]]; then'
  for b in "${binaries[@]}"; do
    name="$(basename "$b")"
    echo "  echo \"=== $name\"; ./$name > $name.log 2>&1 || status=1"
    echo "  grep -E '^\\[ +(OK|FAILED|SKIPPED|PASSED) +\\]|Failure|Which is|got ' $name.log || true"
  done
  echo 'fi'
  echo 'if [[ "$phases" == *" memcheck "* ]]; then'
  for b in "${binaries[@]}"; do
    name="$(basename "$b")"
    if [[ "$name" == kernels_cuda_* ]]; then
      echo "  echo \"=== $name under compute-sanitizer memcheck\"; timeout 300 compute-sanitizer --tool memcheck ./$name 2>&1 | tail -2"
    fi
  done
  echo 'fi'
  echo 'if [[ "$phases" == *" bench "* ]]; then'
  if [[ ${#benches[@]} -gt 0 ]]; then
    echo '  if [[ $status -eq 0 ]]; then echo "=== bench/gpu_compare.sh"; bash bench/gpu_compare.sh -d . || status=1'
    echo '  else echo "=== bench skipped: a GPU test failed"; fi'
  else
    echo '  echo "=== bench: not in this bundle (build without TESSERA_BUILD_BENCH)"'
  fi
  echo 'fi'
  echo 'exit $status'
} > "$out/run.sh"
chmod +x "$out/run.sh"
echo "gpu_bundle: $(du -sh "$out" | cut -f1) in $out (${#binaries[@]} test binaries, ${#benches[@]} benchmarks); on the GPU machine: bash $out/run.sh [tests|bench|memcheck ...]" >&2
