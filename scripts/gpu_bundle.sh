#!/usr/bin/env bash
# Packs a build's GPU tests (ctest label `gpu`) for a bare GPU machine: the test binaries,
# the shared libraries such a machine lacks (abseil, GoogleTest; its own CUDA runtime, NCCL,
# C and C++ libraries are used), and a run.sh that runs each test there and then the CUDA
# kernel tests under compute-sanitizer's memcheck. About 3 MB, so it travels with the
# working tree to the `device` tool's machine:
#
#   bash scripts/test.sh                       # or any build of the tests with nvcc present
#   bash scripts/gpu_bundle.sh [BUILD_DIR] [OUT_DIR]     # defaults: build, build-gpu
#   # then, through the device tool: run "bash build-gpu/run.sh" carrying build-gpu
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

rm -rf "$out"
mkdir -p "$out/lib"
for b in "${binaries[@]}"; do
  cp "$b" "$out/"
  # Libraries outside the C/C++ runtime and the CUDA toolkit.
  ldd "$b" | awk '/=>/ {print $3}' \
    | grep -Ev '/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so|/cuda/|libcuda|libnccl' \
    | xargs -r -I{} cp -Ln {} "$out/lib/"
done

{
  echo '#!/usr/bin/env bash'
  echo '# Written by scripts/gpu_bundle.sh: runs the bundled GPU tests on this machine.'
  echo 'cd "$(dirname "$0")"'
  echo 'nccl="$(find / -name libnccl.so.2 -not -path "/proc/*" 2>/dev/null | head -1)"'
  echo 'export LD_LIBRARY_PATH="$PWD/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib${nccl:+:$(dirname "$nccl")}"'
  echo 'nvidia-smi -L || true'
  echo 'status=0'
  for b in "${binaries[@]}"; do
    name="$(basename "$b")"
    echo "echo \"=== $name\"; ./$name > $name.log 2>&1 || status=1"
    echo "grep -E '^\\[ +(OK|FAILED|SKIPPED|PASSED) +\\]|Failure|Which is|got ' $name.log || true"
    if [[ "$name" == kernels_cuda_* ]]; then
      echo "echo \"=== $name under compute-sanitizer memcheck\"; timeout 300 compute-sanitizer --tool memcheck ./$name 2>&1 | tail -2"
    fi
  done
  echo 'exit $status'
} > "$out/run.sh"
chmod +x "$out/run.sh"
echo "gpu_bundle: $(du -sh "$out" | cut -f1) in $out (${#binaries[@]} test binaries); on the GPU machine: bash $out/run.sh" >&2
