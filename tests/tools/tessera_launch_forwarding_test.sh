#!/usr/bin/env bash
# `tessera launch` hands its replica settings to every tessera-worker it starts: a stand-in
# mpirun (--mpirun) records the command line it is given and exits, and that line must carry
# each forwarded flag (run by ctest with the build's bin dir and the project's Python).
set -euo pipefail
source "$(dirname "$0")/launch_test_lib.sh"

cat > "$work/mpirun" <<SH
#!/usr/bin/env bash
printf '%s\n' "\$@" > "$work/mpirun.args"
SH
chmod +x "$work/mpirun"
mkdir "$work/tmp"
CUDA_VISIBLE_DEVICES=0 TMPDIR="$work/tmp" setsid "$bin/tessera" launch --model random:tiny:q8_0 \
  --replicas 1 --port 0 --http-port 0 --port-file "$work/port" --mpirun "$work/mpirun" \
  --backend cuda --quantization fp8 --enforce-eager --no-pack-weights --deterministic \
  --kv-cache-dtype f16 > "$work/launch.log" 2>&1 &
launch_pid=$!
for _ in $(seq 1 600); do [ -s "$work/mpirun.args" ] && break; sleep 0.2; done
[ -s "$work/mpirun.args" ] || fail "the replica's mpirun was not started"
args="$(tr '\n' ' ' < "$work/mpirun.args")"
for flag in "--backend cuda" "--quantization fp8" "--enforce-eager" "--no-pack-weights" \
            "--deterministic" "--kv-cache-dtype f16"; do
  [[ " $args" == *" $flag "* ]] || fail "the worker's command line lacks '$flag': $args"
done
kill -TERM "$launch_pid"
wait "$launch_pid" || true
launch_pid=""
echo "PASS"
