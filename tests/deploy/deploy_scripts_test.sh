#!/usr/bin/env bash
# deploy/: the mpirun launch script and the container entrypoints, run directly (a container
# cannot be built here), with real `mpirun --oversubscribe` and a generated hostfile:
#  1. tessera-mpirun refuses too few slots (exit 2, the numbers) and hosts that never
#     resolve (exit 3, naming them); its Slurm and LeaderWorkerSet host discovery and the
#     Open MPI 4/5 and NCCL settings (--dry-run);
#  2. coordinator.sh serves from its environment (HTTP /health, /ready) and drains on TERM;
#  3. worker.sh as a group leader runs tessera-mpirun over a hostfile of this machine: the
#     tp 2 replica registers with the coordinator, its ranks' health port turns SERVING, a
#     chat request through the OpenAI API is answered, and TERM ends the job;
#  4. worker.sh as a group worker installs the group's keys and starts sshd with a config
#     sshd accepts;
#  5. shellcheck on every script and hadolint on both Dockerfiles.
set -euo pipefail
bin="$1"
python="$2"
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv_bin="$(dirname "$python")"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/*.log; do [ -f "$f" ] && { echo "== $f" >&2; cat "$f" >&2; }; done
  exit 1
}
wait_for() {  # wait_for SECONDS COMMAND...
  local deadline=$((SECONDS + $1)); shift
  until "$@" > /dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}
free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mpirun_script="$root/deploy/bin/tessera-mpirun"
# The entrypoints run with HOME set to scratch directories; the model stays where it is.
export TESSERA_CACHE="${TESSERA_CACHE:-$HOME/.cache/tessera}"

# --- 1. tessera-mpirun's checks and host discovery --------------------------------------
printf 'localhost slots=1\n' > "$work/one-slot"
set +e
"$mpirun_script" --hostfile "$work/one-slot" --model default --tp 2 --coordinator 127.0.0.1:1 \
  > "$work/slots.out" 2>&1
code=$?
set -e
((code == 2)) || fail "too few slots: exit $code, expected 2"
grep -q "offer 1 slots (localhost: 1); --tp 2 x --pp 1 needs 2" "$work/slots.out" \
  || fail "too few slots: $(cat "$work/slots.out")"

set +e
"$mpirun_script" --hosts "localhost:1,nowhere.invalid:1" --model default --tp 2 \
  --coordinator 127.0.0.1:1 --wait-timeout 1 > "$work/dns.out" 2>&1
code=$?
set -e
((code == 3)) || fail "unresolvable host: exit $code, expected 3: $(cat "$work/dns.out")"
grep -q "nowhere.invalid" "$work/dns.out" || fail "the missing host is not named"

for bad in "--tp 0" "--pp x" "--wait-timeout -1"; do
  # shellcheck disable=SC2086  # the flag and its value are two words
  if "$mpirun_script" --hosts localhost --model default --coordinator h:1 $bad > /dev/null 2>&1; then
    fail "accepted $bad"
  fi
done
if "$mpirun_script" --hosts localhost --model default --coordinator nohostport > /dev/null 2>&1; then
  fail "accepted a coordinator without a port"
fi

mkdir -p "$work/fakebin"
cat > "$work/fakebin/scontrol" << 'SCONTROL'
#!/usr/bin/env bash
[ "$1 $2" = "show hostnames" ] && [ "$3" = "gpu[01-02]" ] && printf 'gpu01\ngpu02\n'
SCONTROL
chmod +x "$work/fakebin/scontrol"
PATH="$work/fakebin:$PATH" SLURM_JOB_NODELIST="gpu[01-02]" SLURM_NTASKS_PER_NODE="2(x2)" \
  "$mpirun_script" --model m.gguf --tp 2 --pp 2 --coordinator coord:50051 --interface eth1 \
  --no-ib --ssh-port 2222 --dry-run > "$work/slurm.out" 2>&1 || fail "Slurm dry run: $(cat "$work/slurm.out")"
for expected in "gpu01 slots=2" "gpu02 slots=2" "OMPI_MCA_btl_tcp_if_include=eth1" \
  "OMPI_MCA_oob_tcp_if_include=eth1" "PRTE_MCA_oob_tcp_if_include=eth1" "NCCL_SOCKET_IFNAME=eth1" \
  "NCCL_IB_DISABLE=1" "PRTE_MCA_plm_ssh_args=-p 2222" "OMPI_MCA_plm_rsh_args=-p 2222" \
  "-np 4" "--tp 2 --pp 2 --coordinator coord:50051" "from Slurm"; do
  grep -qF -- "$expected" "$work/slurm.out" || fail "Slurm dry run lacks '$expected': $(cat "$work/slurm.out")"
done

LWS_LEADER_ADDRESS="llama-0.llama.serving" LWS_GROUP_SIZE=3 \
  "$mpirun_script" --model m --tp 3 --coordinator c:1 --dry-run > "$work/lws.out" 2>&1 \
  || fail "LWS dry run: $(cat "$work/lws.out")"
for expected in "llama-0.llama.serving slots=1" "llama-0-1.llama.serving slots=1" \
  "llama-0-2.llama.serving slots=1"; do
  grep -qF "$expected" "$work/lws.out" || fail "LWS dry run lacks '$expected': $(cat "$work/lws.out")"
done

# --- 2. the coordinator's entrypoint --------------------------------------------------------
http_port="$(free_port)"
TESSERA_BIN_DIR="$bin" TESSERA_HOST=127.0.0.1 TESSERA_GRPC_PORT=0 TESSERA_HTTP_PORT="$http_port" \
  TESSERA_MODELS="default" TESSERA_DRAIN_TIMEOUT=5 \
  "$root/deploy/entrypoints/coordinator.sh" --port-file "$work/port" --heartbeat-timeout 5 \
  > "$work/coordinator.log" 2>&1 &
pids+=($!)
coordinator=$!
wait_for 60 test -s "$work/port" || fail "coordinator.sh did not start"
port="$(cat "$work/port")"
http() { "$python" - "$@" << 'PY'
import sys, urllib.request, urllib.error
url, body = sys.argv[1], (sys.argv[2].encode() if len(sys.argv) > 2 else None)
request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=120) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
PY
}
http "http://127.0.0.1:$http_port/health" > "$work/health.out"
[ "$(head -1 "$work/health.out")" = 200 ] || fail "/health: $(cat "$work/health.out")"
http "http://127.0.0.1:$http_port/ready" > "$work/ready.out"
[ "$(head -1 "$work/ready.out")" = 503 ] || fail "/ready without a replica: $(cat "$work/ready.out")"

# --- 3. a group leader's entrypoint: tessera-mpirun over this machine ----------------------
health_port="$(free_port)"
printf 'localhost\n' > "$work/hosts"
HOME="$work" HOSTNAME="tessera-default-g0-0" TESSERA_BIN_DIR="$bin" TESSERA_MODEL=default \
  TESSERA_COORDINATOR="127.0.0.1:$port" TESSERA_TP=2 TESSERA_PP=1 TESSERA_SLOTS_PER_HOST=2 \
  TESSERA_GROUP_HOSTS="localhost" TESSERA_HEALTH_PORT="$health_port" TESSERA_OVERSUBSCRIBE=1 \
  TESSERA_WAIT_TIMEOUT=10 TESSERA_SSH_DIR="$work/none" \
  setsid "$root/deploy/entrypoints/worker.sh" --threads 1 --kv-cache-mb 64 \
  > "$work/leader.log" 2>&1 &
pids+=($!)
leader=$!
ready() { http "http://127.0.0.1:$http_port/ready" | head -1 | grep -q 200; }
wait_for 180 ready || fail "the replica did not become ready"
grep -q "2 ranks (tp 2 x pp 1) on 1 host(s) from TESSERA_GROUP_HOSTS" "$work/leader.log" \
  || fail "tessera-mpirun did not describe the job"
health_status() {
  "$python" - "$health_port" << 'PY'
import sys, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
with grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}") as channel:
    stub = health_pb2_grpc.HealthStub(channel)
    print(health_pb2.HealthCheckResponse.ServingStatus.Name(
        stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status))
PY
}
wait_for 30 bash -c "$(declare -f health_status); health_port=$health_port python=$python health_status | grep -q '^SERVING$'" \
  || fail "the rank's health port is not SERVING: $(health_status 2>&1 || true)"
http "http://127.0.0.1:$http_port/v1/chat/completions" \
  '{"model": "default", "messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 12, "temperature": 0}' \
  > "$work/chat.out"
[ "$(head -1 "$work/chat.out")" = 200 ] || fail "chat through the coordinator: $(cat "$work/chat.out")"
grep -q '"chat.completion"' "$work/chat.out" || fail "not a chat completion: $(cat "$work/chat.out")"
# Both ranks' step times reach the coordinator's /metrics (with the next heartbeat).
rank_metrics() {
  http "http://127.0.0.1:$http_port/metrics" > "$work/metrics.out"
  grep -q '^tessera_rank_steps_total{model="default",replica="default/0",rank="1"} [1-9]' "$work/metrics.out" &&
    grep -q '^tessera_rank_communication_seconds_total{model="default",replica="default/0",rank="1"} [0-9.e-]*[1-9]' "$work/metrics.out"
}
wait_for 30 rank_metrics || fail "no step times of rank 1 in /metrics: $(grep tessera_rank "$work/metrics.out")"
kill -TERM "$leader"
for _ in $(seq 1 150); do kill -0 "$leader" 2> /dev/null || break; sleep 0.2; done
if kill -0 "$leader" 2> /dev/null; then fail "the leader's job outlived TERM"; fi
if pgrep -f -- "--health-port $health_port" > /dev/null; then fail "ranks outlived the leader"; fi
kill -TERM "$coordinator"
wait "$coordinator" || fail "coordinator.sh did not exit cleanly on TERM"

# --- 4. a group worker's entrypoint: keys and sshd --------------------------------------
mkdir -p "$work/ssh" "$work/home"
ssh-keygen -q -t ed25519 -N "" -f "$work/ssh/id_ed25519"
cp "$work/ssh/id_ed25519.pub" "$work/ssh/authorized_keys"
chmod 644 "$work/ssh/id_ed25519"  # as a Secret mounts it: too open for ssh
cat > "$work/fakebin/sshd" << 'SSHD'
#!/usr/bin/env bash
# Records how it was started; checks the config with the real sshd when there is one.
echo "$@" > "$SSHD_RECORD"
config="${*: -1}"
if [ -x /usr/sbin/sshd ]; then /usr/sbin/sshd -t -f "$config"; fi
SSHD
chmod +x "$work/fakebin/sshd"
HOME="$work/home" HOSTNAME="tessera-default-g0-1" TESSERA_SSH_DIR="$work/ssh" TESSERA_SSH_PORT=2299 \
  TESSERA_SSHD="$work/fakebin/sshd" SSHD_RECORD="$work/sshd.args" \
  "$root/deploy/entrypoints/worker.sh" > "$work/worker.log" 2>&1 || fail "worker.sh (worker role)"
grep -q -- "-D -e -f $work/home/.sshd/sshd_config" "$work/sshd.args" || fail "sshd args: $(cat "$work/sshd.args")"
grep -q "^Port 2299$" "$work/home/.sshd/sshd_config" || fail "sshd port"
grep -q "^PasswordAuthentication no$" "$work/home/.sshd/sshd_config" || fail "password logins"
[ -s "$work/home/.sshd/host_ed25519" ] || fail "no host key"
[ "$(stat -c %a "$work/home/.ssh/id_ed25519")" = 600 ] || fail "the key is not private"
cmp -s "$work/ssh/authorized_keys" "$work/home/.ssh/authorized_keys" || fail "authorized_keys"
if HOSTNAME=no-index "$root/deploy/entrypoints/worker.sh" > "$work/noindex.out" 2>&1; then
  fail "worker.sh guessed a role without an index"
fi
grep -q "TESSERA_ROLE" "$work/noindex.out" || fail "no hint about TESSERA_ROLE"

# --- 5. linters -------------------------------------------------------------------------
"$venv_bin/shellcheck" "$root/deploy/bin/tessera-mpirun" "$root/deploy/entrypoints/"*.sh \
  "$0" > "$work/shellcheck.log" 2>&1 || fail "shellcheck"
(cd "$root" && "$venv_bin/hadolint" deploy/docker/Dockerfile.cpu deploy/docker/Dockerfile.cuda) \
  > "$work/hadolint.log" 2>&1 || fail "hadolint"
echo "PASS"
